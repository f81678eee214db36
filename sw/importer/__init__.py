"""Import of trained ONNX models into eventconv networks, with calibration and an accuracy
report (``eventconv import``).

* :mod:`~eventconv.importer.graph` reads the graph as a chain of eventconv layers
  (Conv -> Relu [-> MaxPool 2x2], QDQ pairs) or refuses it with one line naming the node;
* :mod:`~eventconv.importer.quantize` makes int8 weights, bias in accumulator units and a
  power-of-two shift per layer, calibrated on frames;
* :mod:`~eventconv.importer.report` compares the golden model's maps with the float model
  run by onnxruntime, layer by layer;
* :mod:`~eventconv.importer.convert` ties them together and writes NET.json, NET.md and
  NET.report.json; :mod:`~eventconv.importer.pnet` builds a real trained model (PNet) to try.

Importing this package loads ``onnx`` and ``onnxruntime`` (about a second): the CLI imports it
only for ``eventconv import``.
"""

from eventconv.importer.convert import convert, import_onnx, load_calibration, parse_scale
from eventconv.importer.graph import Unsupported, read_graph
from eventconv.importer.quantize import SATURATION

__all__ = ["convert", "import_onnx", "load_calibration", "parse_scale", "read_graph",
           "Unsupported", "SATURATION"]
