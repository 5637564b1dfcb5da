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
    GraphBuildError,
    GraphFormatError,
    OptionError,
    PlanError,
    PortingCheckError,
    PortingWarning,
    PortmetaError,
    ProfileError,
    StalePlanError,
    UnknownNodeError,
    UpstreamInternalError,
)
from .explain import explain
from .fingerprint import fingerprint
from .io import dump_graph, dump_graphs, graph_from_dict, graph_to_dict, load_graph, load_graphs
from .plan import MetaDelta, Plan, final_meta, plan
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
from .rules import Diagnostic, Rule, Severity
from .snapshot import (
    Snapshot,
    annotated_nodes,
    build_graph,
    graph_of,
    merge_graphs,
    qualified_node,
    record,
    records,
    users,
)

__version__ = "0.1.0"

# The exceptions a caller catches by name are here; every planning failure's own class
# (NoChooseQParamsError, ...) is in portmeta.errors, each a PlanError.
__all__ = [
    "__version__",
    # records and snapshots
    "Annotation",
    "Malformed",
    "NodeRecord",
    "NodeRef",
    "Opaque",
    "QInput",
    "QSpec",
    "Snapshot",
    "Target",
    "TargetKind",
    "annotated_nodes",
    "build_graph",
    "merge_graphs",
    "graph_of",
    "qualified_node",
    "record",
    "records",
    "users",
    # files and fingerprints
    "dump_graph",
    "dump_graphs",
    "fingerprint",
    "graph_from_dict",
    "graph_to_dict",
    "load_graph",
    "load_graphs",
    # profiles
    "LEGACY_TORCH_AO",
    "PROFILES",
    "TORCHAO",
    "Profile",
    "get_profile",
    # planning
    "Diagnostic",
    "MetaDelta",
    "Plan",
    "Rule",
    "Severity",
    "explain",
    "final_meta",
    "plan",
    # check
    "Finding",
    "check",
    # errors
    "GraphBuildError",
    "GraphFormatError",
    "OptionError",
    "PlanError",
    "PortingCheckError",
    "PortingWarning",
    "PortmetaError",
    "ProfileError",
    "StalePlanError",
    "UnknownNodeError",
    "UpstreamInternalError",
]
