"""The Dataset page's audit: run it with a progress bar, review its suspects one by one (relabel,
exclude, keep; a duplicate group as a group), the embedding map, undo, and train again. What is
still to review, and every change, is decided in `flower_core` (`data.fixes`, `data.audit`)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from flower_core import charts
from flower_core.data import fixes
from flower_core.data.audit import DEFAULT_IMAGE_SIZE, audit_dataset
from flower_core.data.label_issues import projection
from flower_core.explain.audit_map import AuditHead, audit_heatmap
from flower_core.training.retrain import last_run_on, train_again
from ui import loaders
from ui.common import guard, link, runs_root

AUDIT = "dataset_audit"
PICKED = "dataset_review_path"
# The map point whose click was handled.
CLICKED = "dataset_map_clicked"
# The audit's head for heatmaps, and the overlays drawn with it, kept with the audit they explain.
HEATMAPS = "dataset_audit_heatmaps"
KEPT_HEATMAPS = 16
STAGES = {"checking": "Checking the photos", "measuring": "Measuring the photos", "features": "Features"}


def run_audit(root: Path) -> None:
    """The audit's settings and its button; the result is kept for this session."""
    left, right = st.columns([1, 3], vertical_alignment="bottom")
    size = left.number_input(
        "Image size (px)", 32, 1024, DEFAULT_IMAGE_SIZE, step=32, key="dataset_audit_size"
    )
    if right.button(
        "Audit the dataset", icon=":material/troubleshoot:", type="primary", key="dataset_audit_go"
    ):
        bar = st.progress(0.0, text="Starting…")

        def report(stage: str, done: int, total: int) -> None:
            bar.progress(min(done / max(total, 1), 1.0), text=f"{STAGES[stage]} {done:,}/{total:,}")

        with guard("The audit failed"):
            st.session_state[AUDIT] = audit_dataset(root, image_size=int(size), progress=report)
        st.session_state.pop(PICKED, None)
        st.session_state.pop(HEATMAPS, None)
        bar.empty()


def summary(audit) -> None:
    cells = st.columns(4)
    facts = audit.summary
    cells[0].metric("Out-of-fold accuracy", f"{facts['out_of_fold_accuracy']:.1%}")
    cells[1].metric("Likely label errors", facts["label_issues"], help="Flagged by confident learning.")
    cells[2].metric("Outliers", facts["outliers"])
    cells[3].metric("Duplicate groups", sum(facts["duplicates"].values()))
    st.caption(
        f"{facts['backbone']} at {facts['image_size']} px, {facts['folds']} folds; features computed for "
        f"{facts['features_computed']:,} photos, {facts['seconds']['total']:.1f} s."
    )


def _act(action, *args) -> None:
    with guard("The fix was refused"):
        entry = action(*args)
    st.session_state["dataset_notice"] = f"Done: {fixes.describe(entry)}"
    st.session_state.pop(PICKED, None)
    st.rerun()


def undo_button(root: Path) -> None:
    if st.button("Undo the last fix", icon=":material/undo:", key="dataset_undo", shortcut="U"):
        with guard("Nothing undone"):
            entry = fixes.undo(root)
        st.session_state["dataset_notice"] = f"Undone: {fixes.describe(entry)}"
        st.rerun()


def _heatmap(root: Path, audit, rel: str, class_name: str):
    """The audit head's Grad-CAM of a photo for a class (`explain.audit_map`), computed on
    demand and kept for this audit: the queue's actions do not wait for it."""
    kept = st.session_state.setdefault(HEATMAPS, {})
    if "head" not in kept:
        kept["head"] = AuditHead.fit(audit)
    key = (rel, class_name)
    if key not in kept:
        kept[key] = audit_heatmap(loaders.audit_map_model(audit), kept["head"], root / rel, class_name)
        drawn = [k for k in kept if k != "head"]
        for old in drawn[: max(len(drawn) - KEPT_HEATMAPS, 0)]:
            del kept[old]
    return kept[key]


def _photo_review(root: Path, audit, suspect: dict, names: list[str]) -> None:
    """One photo (or its heatmap): given and suggested labels, score, and the three decisions."""
    image, facts = st.columns([1, 1])
    explained = suspect["suggested"] or suspect["given"]
    overlay = None
    if facts.toggle(
        "Heatmap",
        key="dataset_heatmap",
        help="Where the audit's own head finds the evidence for the class: Grad-CAM of a logistic "
        "regression on the audit's backbone features (no trained run needed).",
    ):  # a failed heatmap is one line; the photo and its decisions are still shown
        with image, st.spinner("Computing the heatmap…"), guard("No heatmap", stop=False):
            overlay = _heatmap(root, audit, suspect["path"], explained)
    if overlay is None:
        image.image(loaders.thumbnail(str(root / suspect["path"]), 384), caption=suspect["path"])
    else:
        image.image(overlay, caption=f"{suspect['path']} · evidence for {explained} (Grad-CAM, audit head)")
    facts.markdown(
        f"**{suspect['kind'].replace('_', ' ')}** · score {suspect['score']:.3f}\n\n"
        f"given **{suspect['given']}** · suggested **{suspect['suggested'] or '–'}**"
    )
    suggested = suspect["suggested"]
    if suggested and suggested != suspect["given"] and suggested in names:
        if facts.button(f"Move to {suggested}", icon=":material/label:", key="dataset_move", shortcut="M"):
            _act(fixes.move_photo, root, suspect["path"], suggested)
    others = [n for n in names if n != suspect["given"]]
    target = facts.selectbox("Or move to", others, key="dataset_move_other")
    if facts.button("Move", key="dataset_move_other_go"):
        _act(fixes.move_photo, root, suspect["path"], target)
    if facts.button("Exclude", icon=":material/block:", key="dataset_exclude", shortcut="X"):
        _act(fixes.exclude_photo, root, suspect["path"])
    if facts.button("Keep the label", icon=":material/check:", key="dataset_keep", shortcut="K"):
        _act(fixes.keep_photo, root, suspect["path"])


def _group_review(root: Path, suspect: dict) -> None:
    """A duplicate group: keep one photo (the others are excluded) or keep them all."""
    st.markdown(f"**{suspect['kind'].replace('_', ' ')}** · {len(suspect['group'])} photos alike")
    columns = st.columns(min(len(suspect["group"]), 4))
    for i, rel in enumerate(suspect["group"]):
        column = columns[i % len(columns)]
        column.image(loaders.thumbnail(str(root / rel), 256), caption=rel)
        if column.button("Keep only this one", key=f"dataset_keep_one_{i}"):
            with guard("The fix was refused"):
                for other in suspect["group"]:
                    if other != rel:
                        fixes.exclude_photo(root, other)
            st.session_state["dataset_notice"] = f"Kept {rel}, excluded {len(suspect['group']) - 1} alike."
            st.rerun()
    if st.button("Keep them all", key="dataset_keep_all", shortcut="K"):
        with guard("The fix was refused"):
            for rel in suspect["group"]:
                fixes.keep_photo(root, rel)
        st.rerun()


def review_queue(root: Path, audit, names: list[str]) -> None:
    """The next suspect to decide on (or the photo picked on the map), with its decisions."""
    queue = fixes.pending(root, audit.suspects)
    picked = st.session_state.get(PICKED)
    st.markdown(f"##### Review · {len(queue):,} left")
    if picked:
        current = next((s for s in queue if s["path"] == picked), None) or _as_suspect(audit, picked)
    elif queue:
        current = queue[0]
    else:
        st.success("Every suspect is reviewed.", icon=":material/check_circle:")
        return
    if current is None:
        st.info(f"{picked} is no longer in the dataset.", icon=":material/info:")
        return
    if "group" in current:
        _group_review(root, current)
    else:
        _photo_review(root, audit, current, names)


def _as_suspect(audit, rel: str) -> dict | None:
    """A photo picked on the map, as the review shows a suspect: its label and the heads' top class."""
    files = audit.dataset.files
    if rel not in files:
        return None
    i = files.index(rel)
    names = audit.dataset.class_names
    given = audit.dataset.labels[i]
    top = int(audit.probabilities[i].argmax())
    return {
        "path": rel,
        "given": names[given],
        "suggested": names[top],
        "score": round(1.0 - float(audit.probabilities[i, given]), 4),
        "kind": "picked on the map",
    }


def embedding_map(root: Path, audit) -> None:
    """The cached features in 2-D (hover: file and labels); a clicked point's photo is shown
    beside the map and opened in the review above."""
    names = audit.dataset.class_names
    labels = [names[label] for label in audit.dataset.labels]
    likely = [names[i] for i in audit.probabilities.argmax(axis=1)]
    doubted = {s["path"] for s in audit.suspects}
    figure = charts.embedding_map(projection(audit.features), audit.dataset.files, labels, likely, doubted)
    chart, photo = st.columns([3, 1])
    with chart:
        event = st.plotly_chart(figure, key="dataset_map", on_select="rerun", selection_mode="points")
    points = (event or {}).get("selection", {}).get("points", [])
    clicked = points[0].get("customdata") if points else None
    # The chart answers its last click on every rerun: a click opens its photo once, so the next
    # suspect shows once that photo is decided on.
    if clicked != st.session_state.get(CLICKED):
        st.session_state[CLICKED] = clicked
        if clicked:
            st.session_state[PICKED] = clicked
            st.rerun()
    picked = st.session_state.get(PICKED)
    if picked and picked in audit.dataset.files and (root / picked).exists():
        photo.image(loaders.thumbnail(str(root / picked), 256), caption=f"{picked}: open in the review above")
    else:
        photo.caption("Click a point to see its photo and review it.")


def retrain(root: Path) -> None:
    """Train again on the fixed dataset with the settings of its last run."""
    last = last_run_on(root, runs_root())
    if last is None:
        st.caption("Train a first run on this dataset to train again after fixing it.")
        return
    if st.button(
        f"Train again on the cleaned dataset (settings of {last[0]})",
        icon=":material/replay:",
        key="dataset_retrain",
    ):
        with guard("Cannot queue the run"):
            run_dir = train_again(root, runs_root(), token=f"retrain-{root}-{len(fixes.journal(root))}")
        st.session_state["dataset_notice"] = (
            f"Queued {run_dir.name}: follow it on the Train page, compare on Compare."
        )
        st.rerun()
    link("compare", "Compare before and after", ":material/leaderboard:")
