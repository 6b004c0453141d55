import gc
import sys

from flower_core.cli import main

code = main()
# The process ends here: the OS takes TensorFlow's objects back at once, where Python's last
# collection at exit would walk them all (bench/README.md, "The train command against ...").
gc.freeze()
sys.exit(code)
