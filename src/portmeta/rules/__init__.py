"""The porting rules, one pure function per rule, each in its own module.

========================  =========================================  ============================
rule                       writes                                     module
========================  =========================================  ============================
static input               dq <- consumer                             :mod:`.static_input`
get_attr view chain        q and view ops <- get_attr                 :mod:`.view_chain`
dynamic input              choose_qparams, q, dq <- consumer          :mod:`.dynamic_input`
static output              q <- producer                              :mod:`.static_output`
========================  =========================================  ============================

Each takes ``(graph, profile, ...)`` and returns a :class:`RuleResult`; none reads or writes
metadata values (see :func:`portmeta.plan`).
"""

from .base import EMPTY, Copy, Diagnostic, Rule, RuleResult, Severity, non_sym_users
from .dynamic_input import dynamic_input, feeding_choose_qparams, find_choose_qparams
from .static_input import static_input, walk_to_producer
from .static_output import static_output
from .view_chain import view_chain

__all__ = [
    "EMPTY",
    "Copy",
    "Diagnostic",
    "Rule",
    "RuleResult",
    "Severity",
    "non_sym_users",
    "dynamic_input",
    "find_choose_qparams",
    "feeding_choose_qparams",
    "static_input",
    "walk_to_producer",
    "static_output",
    "view_chain",
]
