"""portmeta: plan, test and apply the metadata PT2E quantization ports onto q/dq nodes.

The core is pure Python (networkx and attrs, never torch): a frozen graph snapshot of
attrs records, the porting rules as pure functions, and a :class:`Plan` of metadata writes
that equals what torchao's ``PortNodeMetaForQDQ`` leaves, node for node. ``portmeta_fx``
turns ``torch.fx`` graphs into snapshots and applies plans back.

Example
-------
>>> import portmeta
>>> from portmeta.testing import GraphBuilder, static
>>> b = GraphBuilder(); x = b.placeholder("x"); q, dq = b.qdq(x)
>>> y = b.call("aten.relu.default", dq, name="relu", tag="P0"); b.annotate(y, inputs={x: static()})
>>> b.output(y)
>>> portmeta.plan(b.build()).final_state()
{'dq': {'quantization_tag': 'P0'}}
"""

from .check import Finding, check
from .errors import (
    AnnotationAttributeError,
    AnnotationTypeError,
    ChooseQParamsUsersError,
    CyclicWalkError,
    DynamicQuantUsersError,
    GraphBuildError,
    GraphFormatError,
    MalformedAnnotationError,
    MissingArgumentError,
    NoChooseQParamsError,
    NonNodeQuantArgError,
    NotANodeInputError,
    NoUserError,
    PlanError,
    PortingCheckError,
    PortingWarning,
    PortmetaError,
    ProfileError,
    ScaleWithoutUsersError,
    StalePlanError,
    UnknownNodeError,
    UpstreamInternalError,
)
from .explain import explain
from .graph import (
    annotated_nodes,
    build_graph,
    dump_graph,
    fingerprint,
    fingerprint_matches,
    graph_from_dict,
    graph_to_dict,
    load_graph,
    record,
    records,
    users,
)
from .plan import MetaDelta, OptionError, Plan, final_meta, plan
from .profiles import LEGACY_TORCH_AO, PROFILES, TORCHAO, Profile, get_profile
from .records import (
    Annotation,
    Malformed,
    NodeRecord,
    NodeRef,
    Opaque,
    QInput,
    QSpec,
    Target,
    TargetKind,
)
from .rules import Copy, Diagnostic, Rule, RuleResult, Severity

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # records and graph
    "Annotation",
    "Malformed",
    "NodeRecord",
    "NodeRef",
    "Opaque",
    "QInput",
    "QSpec",
    "Target",
    "TargetKind",
    "annotated_nodes",
    "build_graph",
    "dump_graph",
    "fingerprint",
    "fingerprint_matches",
    "graph_from_dict",
    "graph_to_dict",
    "load_graph",
    "record",
    "records",
    "users",
    # profiles
    "LEGACY_TORCH_AO",
    "PROFILES",
    "TORCHAO",
    "Profile",
    "get_profile",
    # planning
    "Copy",
    "Diagnostic",
    "MetaDelta",
    "Plan",
    "Rule",
    "RuleResult",
    "Severity",
    "explain",
    "final_meta",
    "plan",
    # errors
    "ChooseQParamsUsersError",
    "CyclicWalkError",
    "DynamicQuantUsersError",
    "GraphBuildError",
    "AnnotationAttributeError",
    "AnnotationTypeError",
    "GraphFormatError",
    "MalformedAnnotationError",
    "MissingArgumentError",
    "NoChooseQParamsError",
    "NonNodeQuantArgError",
    "NotANodeInputError",
    "NoUserError",
    "OptionError",
    "PlanError",
    "PortmetaError",
    "ProfileError",
    "ScaleWithoutUsersError",
    "StalePlanError",
    "UnknownNodeError",
    "UpstreamInternalError",
    # check
    "Finding",
    "check",
    "PortingCheckError",
    "PortingWarning",
]
