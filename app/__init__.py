"""The SMART-3D Gradio app: class, image or partial scan in; every decoding step streamed
into a Plotly 3D viewer; meshes out. Start it with ``python app.py``.

- ``layout``: the page (``build_demo(pipe) -> gr.Blocks``) and its ``launch`` options;
- ``handlers``: what the buttons do, plain Python (``Handlers``), importable without launching;
- ``viewers``: the per-step Plotly payloads and the small script that draws them in the browser;
- ``inputs``: reading scans and images, making a scan from a benchmark shape;
- ``settings``: the decoding settings' ranges and checks;
- ``downloads``: per-session folders and the exported files, swept when a session ends or idles;
- ``guard``: checks every API call (event, number and types of inputs) before gradio sees it;
- ``tiny_weights``: random tiny weights, to try the app (and test it) without trained ones;
- ``make_examples``: writes the example scans and images in ``assets/scans`` and ``assets/images``.
"""

from .handlers import AppConfig, Handlers
from .layout import build_demo, launch_options

__all__ = ["AppConfig", "Handlers", "build_demo", "launch_options"]
