"""A network: layers chained by their events (``SPEC.md``, "A network").

One JSON object holds the input (``height``, ``width``, ``channels_in``, the detector's
``threshold``, ``mode``) and ``layers``, 1 to :data:`MAX_LAYERS` layer objects. Each layer is
validated as a :class:`~eventconv.core.config.Config` whose size and input channels come from
the layer before, so every message names the field as ``layers[i].field``. A configuration
without ``layers`` is the one-layer form: a network of that one layer (:attr:`Network.single`),
whose results keep the one-layer ``OUT.npz``.
"""

from dataclasses import dataclass

from eventconv.core import ranges
from eventconv.core.config import EVENT_CHANNELS, Config, EventsConfig, read_json
from eventconv.core.ranges import MAX_CHANNELS, ConfigError

__all__ = ["Network", "MAX_LAYERS", "NETWORK_FIELDS", "LAYER_FIELDS", "load_network"]

MAX_LAYERS = 16
#: Fields of the network object, and of each of its layers (hardware-only knobs included).
NETWORK_FIELDS = ("height", "width", "channels_in", "threshold", "mode", "pixels_per_cycle",
                  "layers", "events")
LAYER_FIELDS = ("channels_out", "kernel_size", "weights", "bias", "shift", "pool",
                "output_threshold", "lanes")
# Fields a layer derives from the one before; given anyway, they must agree.
DERIVED_FIELDS = ("height", "width", "channels_in")


@dataclass(frozen=True, eq=False)
class Network:
    """Layers chained by their events: layer 1 behind the delta detector, layer i+1 fed by
    layer i's output events.

    Attributes
    ----------
    layers : tuple of :class:`~eventconv.core.config.Config`
        Each with its derived ``height``, ``width`` and ``channels_in``; the network's
        ``threshold``, ``mode`` and ``pixels_per_cycle`` are the first layer's.
    single : bool
        Built from the one-layer form (no ``layers`` field).
    events : :class:`~eventconv.core.config.EventsConfig` or None
        The ``events`` object (event-camera input), in either form; None without one.
    """

    layers: tuple
    single: bool = False
    events: EventsConfig | None = None

    @classmethod
    def from_dict(cls, obj):
        if not isinstance(obj, dict):
            raise ConfigError(f"configuration must be a JSON object, not {type(obj).__name__}")
        if "layers" not in obj:
            config = Config.from_dict({k: v for k, v in obj.items() if k != "events"})
            return cls((config,), single=True, events=_events(obj, config.channels_in))
        _check_fields("", obj, NETWORK_FIELDS, ("height", "width", "channels_in", "layers"))
        layers = obj["layers"]
        if not isinstance(layers, list) or not 1 <= len(layers) <= MAX_LAYERS:
            got = len(layers) if isinstance(layers, list) else type(layers).__name__
            raise ConfigError(f"layers must be a list of 1..{MAX_LAYERS} layer objects, "
                              f"not {got}")
        height = ranges.integer("height", obj["height"], 1, ranges.MAX_FRAME_SIDE)
        width = ranges.integer("width", obj["width"], 1, ranges.MAX_FRAME_SIDE)
        channels = ranges.integer("channels_in", obj["channels_in"], 1, MAX_CHANNELS)
        built = []
        for index, layer in enumerate(layers):
            # The detector's fields go to the first layer; the mode to every layer.
            given = obj if index == 0 else {k: v for k, v in obj.items() if k == "mode"}
            config = _layer(index, layer, height, width, channels, given)
            built.append(config)
            channels, height, width = config.output_shape
        return cls(tuple(built), events=_events(obj, built[0].channels_in))

    @classmethod
    def from_json(cls, path):
        return cls.from_dict(read_json(path))

    @classmethod
    def of(cls, config):
        """The one-layer network of a :class:`~eventconv.core.config.Config`."""
        return cls((config,), single=True)

    def to_dict(self):
        events = {} if self.events is None else {"events": self.events.to_dict()}
        if self.single:
            return {**self.layers[0].to_dict(), **events}
        first = self.layers[0]
        return {"height": first.height, "width": first.width,
                "channels_in": first.channels_in, "threshold": first.threshold,
                "mode": first.mode, "pixels_per_cycle": first.pixels_per_cycle,
                "layers": [{name: value for name, value in layer.to_dict().items()
                            if name in LAYER_FIELDS} for layer in self.layers], **events}

    @property
    def first(self):
        return self.layers[0]

    @property
    def mode(self):
        return self.layers[0].mode

    @property
    def output_shape(self):
        """(C, H', W') of the last layer's map."""
        return self.layers[-1].output_shape

    def check_frames(self, frames):
        """As :meth:`Config.check_frames` of the first layer: frames as (T, Cin, H, W)."""
        return self.layers[0].check_frames(frames)


def _check_fields(prefix, obj, allowed, required):
    for key in obj:
        if key not in allowed:
            raise ConfigError(f"unknown field '{prefix}{key}'; allowed fields: "
                              f"{', '.join(allowed)}")
    for key in required:
        if key not in obj:
            raise ConfigError(f"missing field '{prefix}{key}'")


def _events(obj, channels_in):
    """The ``events`` object of ``obj`` (None without one); a recording fills 1 channel (both
    polarities) or 2 (OFF, ON), so the input must have one of those."""
    if "events" not in obj:
        return None
    events = EventsConfig.from_dict(obj["events"])
    if channels_in not in EVENT_CHANNELS:
        raise ConfigError(f"channels_in must be 1 (both polarities together) or 2 (OFF, ON) "
                          f"with an 'events' object, not {channels_in}")
    return events


def _layer(index, layer, height, width, channels, network):
    """Layer ``index`` as a Config, given the size and channels it takes; errors name
    ``layers[index].field``."""
    where = f"layers[{index}]."
    if not isinstance(layer, dict):
        raise ConfigError(f"layers[{index}] must be a JSON object, not {type(layer).__name__}")
    _check_fields(where, layer, LAYER_FIELDS + DERIVED_FIELDS,
                  ("channels_out", "kernel_size", "weights"))
    source = "the input" if index == 0 else f"layers[{index - 1}]"
    derived = {"height": height, "width": width, "channels_in": channels}
    for name, value in derived.items():
        if name in layer and layer[name] != value:
            raise ConfigError(f"{where}{name} must be {value} (from {source}), "
                              f"not {layer[name]!r}")
    fields = {**{k: v for k, v in layer.items() if k not in DERIVED_FIELDS}, **derived}
    for name in ("threshold", "mode", "pixels_per_cycle"):
        if name in network:
            fields[name] = network[name]
    try:
        return Config.from_dict(fields)
    except ConfigError as e:
        message = str(e)
        if message.startswith(("height", "width")):
            hint = "; only pool 1 takes an odd size" if "even" in message else ""
            raise ConfigError(f"{where}{message} (the size {height} x {width} from "
                              f"{source}{hint})") from None
        if message.startswith("weights must be nested lists shaped"):
            message += f" (channels_in = {channels} from {source})"
        if message.startswith(tuple(NETWORK_FIELDS)) and not message.startswith("channels_in"):
            raise ConfigError(message) from None
        raise ConfigError(where + message) from None


def load_network(path):
    """The network (or one-layer form) in the JSON file ``path``."""
    return Network.from_json(path)
