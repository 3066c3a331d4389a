"""Double-integrator control problems in a fixed answer format (`type: double_integrator`).

`spec` holds the config, `dynamics` the simulation and the minimum-energy control,
`answer_format` how prompts and answers are written and checked, `source` the problems and
the data source.
"""

from neat.data.double_integrator.answer_format import (
    CONTROLS_CLOSE,
    CONTROLS_OPEN,
    REASONING_CLOSE,
    REASONING_OPEN,
    FormatCheck,
    check_format,
    completion_text,
    format_number,
    parse_controls,
    prompt_text,
)
from neat.data.double_integrator.dynamics import (
    control_cost,
    optimal_controls,
    simulate,
    step_dt,
)
from neat.data.double_integrator.source import (
    GENERATOR_VERSION,
    SPLITS,
    ControlProblem,
    DoubleIntegratorSource,
    Split,
    make_problem,
    problems,
    train_problem,
)
from neat.data.double_integrator.spec import (
    CONTEXT_KEY,
    DoubleIntegratorSourceConfig,
    DoubleIntegratorTestConfig,
)

__all__ = [
    "CONTEXT_KEY",
    "CONTROLS_CLOSE",
    "CONTROLS_OPEN",
    "GENERATOR_VERSION",
    "REASONING_CLOSE",
    "REASONING_OPEN",
    "SPLITS",
    "ControlProblem",
    "DoubleIntegratorSource",
    "DoubleIntegratorSourceConfig",
    "DoubleIntegratorTestConfig",
    "FormatCheck",
    "Split",
    "check_format",
    "completion_text",
    "control_cost",
    "format_number",
    "make_problem",
    "optimal_controls",
    "parse_controls",
    "problems",
    "prompt_text",
    "simulate",
    "step_dt",
    "train_problem",
]
