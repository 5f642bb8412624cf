"""GraphML and GEXF exports of the neuron graph for Gephi, written by networkx.

Nodes carry layer, neuron, a ``L<layer>.N<neuron>`` label, cluster, merged cluster and strength; edges carry
the projected weight. The files are deterministic: nodes and edges in index order, and GEXF without its
last-modified date.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import networkx as nx
import pandas as pd
import scipy.sparse as sp
from networkx.readwrite.gexf import GEXFWriter

from neuronmap.graph.communities import to_networkx
from neuronmap.graph.config import EXPORT_FORMATS
from neuronmap.rundir import atomic_write_bytes

NODE_ATTRIBUTES = ["layer", "neuron", "cluster", "merged_cluster", "strength"]


def neuron_networkx(graph: sp.sparray, neurons: pd.DataFrame) -> nx.Graph:
    """The neuron graph with the neurons table's attributes on its nodes (node i is row i)."""
    result = to_networkx(graph)
    for i, row in enumerate(neurons[NODE_ATTRIBUTES].to_dict("records")):
        result.nodes[i].update(row, label=f"L{row['layer']}.N{row['neuron']}")
    return result


def write_exports(
    graph: sp.sparray, neurons: pd.DataFrame, directory: Path, formats: Sequence[str]
) -> list[str]:
    """Write ``graph.<format>`` for each format into ``directory``; returns the file names."""
    if not formats:
        return []
    network = neuron_networkx(graph, neurons)
    names = []
    for fmt in formats:
        buffer = io.BytesIO()
        if fmt == "graphml":
            nx.write_graphml(network, buffer)
        elif fmt == "gexf":
            writer = GEXFWriter()
            writer.xml.find("meta").attrib.pop("lastmodifieddate", None)
            writer.add_graph(network)
            writer.write(buffer)
        else:
            raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(EXPORT_FORMATS)}")
        atomic_write_bytes(buffer.getvalue(), directory / f"graph.{fmt}")
        names.append(f"graph.{fmt}")
    return names
