"""The defaults of ``statgan reproduce``, once: :func:`statgan.experiments.run` uses them and the
CLI's help texts read them (without importing torch)."""

#: budget when none is given
DEFAULT_BUDGET = "small"
#: worker processes when none is given (1 = cells run in this process)
DEFAULT_JOBS = 1
#: output folder when none is given, relative to the working directory
DEFAULT_OUT = "runs/reproduce/{name}-{budget}"
#: report file when none is given, inside the output folder
DEFAULT_REPORT = "{name}.md"
