"""Flower Studio: transfer learning on five flower classes, in the browser.

Run with `streamlit run app.py`. This file is the Home page and the navigation; the other pages
live in `pages/` and every computation in `flower_core`.
"""

import streamlit as st

from ui import common, home, sources

st.set_page_config(page_title=common.APP_NAME, page_icon=str(common.ASSETS / "icon.png"), layout="wide")
st.logo(str(common.ASSETS / "logo.svg"), icon_image=str(common.ASSETS / "icon.svg"), size="large")


def home_page() -> None:
    """What the app does, the state of the dataset, weights and runs, and where to go next."""
    common.page(
        "home",
        "Transfer learning on five flower classes (daisy, dandelion, "
        "rose, sunflower, tulip): explore the photos, train a model from a button, "
        "compare runs with the study it reproduces, and see what the model looks at.",
    )
    if notice := st.session_state.pop("home_notice", None):
        st.success(notice, icon=":material/check_circle:")
    root = common.data_root()
    cards = st.columns(3)
    with cards[0]:
        has_data = home.dataset_card(root)
    with cards[1]:
        home.weights_card()
    with cards[2]:
        home.runs_card()
    if not has_data:
        st.subheader("Get a dataset")
        st.write("Choose one of four ways to get photos. Each page works once a dataset is in use.")
        sources.chooser()
    st.subheader("Pages")
    home.page_directory()
    if has_data:
        with st.expander("Use another dataset", icon=":material/swap_horiz:"):
            sources.chooser()


SECTIONS = common.navigation_pages(home_page)
# The menu is drawn here, not by Streamlit: with `client.showSidebarNavigation = false`
# (.streamlit/config.toml) no list of the files in pages/ flashes before this script runs.
navigation = st.navigation(SECTIONS, position="hidden")
with st.sidebar:
    for section, section_pages in SECTIONS.items():
        if section:
            st.caption(section)
        for section_page in section_pages:
            st.page_link(section_page)
common.import_keras_once()  # every page, Home's weights card too, reaches TensorFlow
home.sidebar_status()
navigation.run()
