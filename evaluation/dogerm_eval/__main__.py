"""``python -m dogerm_eval`` and ``accelerate launch -m dogerm_eval``: the dogerm-eval command line."""

from dogerm_eval.cli import main

if __name__ == "__main__":
    main(prog_name="dogerm-eval")
