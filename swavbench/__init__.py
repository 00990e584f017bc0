"""swavbench: SwAV on PaddlePaddle and a regression harness for its nightly CI."""

__version__ = "0.1.0"
