"""The page: input tabs and settings on the left, the step viewer and the results on the right.

``build_demo(pipe)`` returns the ``gr.Blocks``; ``launch_options(config)`` the matching ``launch()``
arguments (upload size limit, the example folders, the check of every API call in ``guard``). Named
API endpoints (for ``gradio_client``): ``generate``, ``complete``, ``generate_image``, ``replay``,
``make_scan``, ``place_scan``, ``preview_placement``, ``image``, ``resample``, ``regenerate_region`` and
``compare``; the helper events (showing the mesh after a run, previews, play, recolouring) are private,
and clearing the mesh viewer runs in the browser only. ``forget_sessions`` drops gradio's per-session
state when a session ends or idles (see ``downloads`` for its files).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import gradio as gr
from gradio import caching
from starlette.middleware import Middleware

from smart3d.classes import CLASSES
from smart3d.editing import REGIONS
from smart3d.pipeline import DEFAULT_IMAGE_CONFIDENCE, Pipeline
from smart3d.masking import SCHEDULES
from smart3d.sampler import POLICIES

from .downloads import SessionFiles
from .guard import RequestGuard
from .handlers import ANY_CLASS, CUSTOM_BOX, AppConfig, Handlers
from .inputs import FRAMES, MAX_SHIFT, MAX_TURN, SCALE_RANGE, SCAN_EXTENSIONS, SCAN_METHODS, UP_CHOICES
from .settings import COLOR_MODES, COMPARABLE, DEFAULTS, LIMITS
from .viewers import PLOTLY_JS, VIEWER_CSS, VIEWER_JS, VIEWER_TEMPLATE, idle_payload, to_json, viewer_head

ROOT = Path(__file__).resolve().parent.parent
SCANS_DIR = ROOT / "assets" / "scans"
IMAGES_DIR = ROOT / "assets" / "images"

# (file, class) of the example scans written by ``python -m app.make_examples``
EXAMPLE_SCANS = (("chair_plane_cut.ply", "chair"), ("airplane_single_view.xyz", "airplane"),
                 ("mug_single_view.npy", "mug"))

# downloads: whole file names (the mesh PLY and the points PLY differ only at the end), and no remove
# buttons (gradio's File draws them even when it is not interactive; removing only hid the file)
PAGE_CSS = """
#downloads td.filename { display: block; white-space: normal; overflow: visible; word-break: break-all;
  max-width: none; }
#downloads td.filename span { display: inline; white-space: normal; overflow: visible; text-overflow: clip; }
#downloads button[aria-label="Remove this file"] { display: none; }
"""

MESH_CAMERA = (60, 70, None)      # Model3D orbit camera: azimuth, polar angle (deg), default distance

INTRO = """# SMART-3D: watch a 3D shape being decoded, token by token
Pick a class, give an image or a partial scan, and press the button: the masked transformer fills the
576 tokens of the shape (64 coarse, 512 fine) over the decoding steps, and each step appears
in the viewer as it is computed. Afterwards, replay any step with the slider and download the mesh."""

IMAGE_NOTE = """Give a picture of **one object on a plain background**, seen from the front or side and from
above. A small image encoder reads its class and the 64 coarse tokens of its rough shape; the
transformer draws the rest."""

IMAGE_MORE = """The encoder was trained only on renders of this project's 12 procedural classes, so renders
like the examples work best and photos of real objects are a long shot. "What the encoder sees" is
the image as the encoder gets it (cropped to the object, 64 x 64)."""

SCAN_NOTE = """Upload a point cloud or mesh (`.ply .obj .off .stl .glb .xyz .npy .npz .pcd .las .laz`), an
example, or make one below. A real scan (any units and axes, floor included) is placed for its
class: check the preview and correct it with the placement controls, then complete."""

SCAN_MORE = """**Place automatically**: the ground plane and stray points are removed, the up axis comes
from the ground (or your choice), the scale from the object's longest side seen, and the heading and
offset from a fit to shapes of the chosen class ('any': all classes, slower). **Already in the
canonical frame**: the points are used as they are (y up, front towards +z, the whole object inside
-1..1; the examples and the scans made here are). The controls start from the automatic guess: a
new up axis places the scan again; rotation, scale and offset only move it. Points outside the box
(red in the preview) are left out. Downloads come back in the scan's own frame and units, so the
completion overlays the scan in your tool; tick the box to get them in the canonical frame."""


EDIT_NOTE = """Change the last shape without starting over (new seed from Settings; both stream like a run):
**resample** keeps what the replayed step had committed and draws the rest again; **regenerate** draws
only the tokens inside a box again (the canonical box is -1..1 on each axis, y up, front towards +z)."""


COMPARE_NOTE = """Decode the Class tab's class twice with the same seed, one setting different: for example
guidance 1 against 4, temperature `0.8 0.5` against `1` (start and end, or one for both), 10 steps
against 50, or two schedules or commit policies (names as in Settings). Everything else comes from
Settings."""


def build_demo(pipe: Pipeline, config: AppConfig = AppConfig(), handlers: Handlers | None = None) -> gr.Blocks:
    """The SMART-3D app around one pipeline (``demo.smart3d`` holds its ``Handlers``)."""
    h = handlers or Handlers(pipe, config)
    # plotly.js for the step viewer (offline), and the session folders: gradio serves the downloads from
    # there instead of copying each into its cache, so they go when their session's folder goes
    gr.set_static_paths([str(PLOTLY_JS), str(h.files.root)])
    # the example scans are cuts of benchmark shapes, already in the canonical frame
    examples = [[str(SCANS_DIR / f), c, "canonical"] for f, c in EXAMPLE_SCANS if (SCANS_DIR / f).exists()]
    image_examples = [[str(p)] for p in sorted(IMAGES_DIR.glob("*.png"))] if pipe.image_encoder is not None else []

    # gradio's cache now holds only uploads (scans, images) and examples: uploads older than a session's
    # idle time-to-live are deleted every minute, and everything when the app closes
    with gr.Blocks(title="SMART-3D", analytics_enabled=False, delete_cache=(60, config.state_ttl_s)) as demo:
        gr.Markdown(INTRO)
        run = gr.State(None, time_to_live=config.state_ttl_s, delete_callback=h.drop_run)
        with gr.Row(equal_height=False):
            # ---- inputs and settings ----
            with gr.Column(scale=3, min_width=320):
                with gr.Tabs():
                    with gr.Tab("Class", id="class"):
                        class_name = gr.Dropdown(list(CLASSES), value="chair", label="Class")
                        generate_btn = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                    with gr.Tab("Image", id="image"):
                        # the input and the button first: with the viewer, in view on a 1366 x 768 screen
                        gr.Markdown(IMAGE_NOTE, elem_id="image-note")
                        image_file = gr.File(label="Image (PNG, JPEG, WebP, BMP)", file_types=["image"],
                                             elem_id="image-file", height=120)
                        image_btn = gr.Button("Generate from image", variant="primary", elem_id="image-btn")
                        image_status = gr.Markdown(elem_id="image-status")
                        if image_examples:
                            gr.Examples(image_examples, inputs=[image_file], label="Example images (click one)",
                                        example_labels=[Path(f).stem.replace("_", " ") for (f,) in image_examples],
                                        cache_examples=False, elem_id="image-examples")
                        with gr.Row(equal_height=True):
                            image_seen = gr.Image(label="What the encoder sees", interactive=False, height=160,
                                                  width=160, elem_id="image-seen", scale=1)
                            with gr.Column(scale=2):
                                image_class = gr.Dropdown([ANY_CLASS, *CLASSES], value=ANY_CLASS, label="Class",
                                                          info="'any': the class read from the image")
                                confidence = gr.Slider(0.0, 1.0, value=DEFAULT_IMAGE_CONFIDENCE, step=0.05,
                                                       label="Give coarse tokens read with at least this confidence",
                                                       info="1: give none (class only); 0: give all 64")
                        with gr.Accordion("More about images", open=False):
                            gr.Markdown(IMAGE_MORE)
                    with gr.Tab("Partial scan", id="scan"):
                        gr.Markdown(SCAN_NOTE)
                        scan_file = gr.File(label="Partial scan", file_types=list(SCAN_EXTENSIONS), elem_id="scan-file",
                                            height=120)
                        scan_class = gr.Dropdown([ANY_CLASS, *CLASSES], value=ANY_CLASS, label="Class",
                                                 info="places a real scan and guides the completion; 'any': none",
                                                 elem_id="scan-class")
                        complete_btn = gr.Button("Complete", variant="primary", elem_id="complete-btn")
                        scan_frame = gr.Radio([(label, key) for key, label in FRAMES.items()], value="auto",
                                              label="Where the scan is", elem_id="scan-frame")
                        scan_info = gr.Markdown(elem_id="scan-info")
                        if examples:
                            gr.Examples(examples, inputs=[scan_file, scan_class, scan_frame],
                                        label="Example scans (click one)",
                                        example_labels=[f"{Path(f).name} ({c})" for f, c, _ in examples],
                                        cache_examples=False, elem_id="scan-examples")
                        scan_plot = gr.Plot(label="The scan placed in the canonical box (y up, front +z)",
                                            elem_id="scan-preview")
                        with gr.Accordion("Placement (starts from the automatic guess)", open=True,
                                          elem_id="placement"):
                            with gr.Row():
                                up_axis = gr.Dropdown(list(UP_CHOICES), value="auto", label="Up axis (scan frame)",
                                                      info="auto: the ground's normal, else +z", elem_id="up-axis",
                                                      scale=1)
                                scan_scale = gr.Slider(*SCALE_RANGE, value=1.0, step=0.01, label="Scale",
                                                       info="times the automatic scale, about the box's centre",
                                                       elem_id="scan-scale", scale=2)
                            yaw = gr.Slider(-MAX_TURN, MAX_TURN, value=0, step=1, label="Rotation about up (degrees)",
                                            info="turns the placed scan about the box's vertical axis",
                                            elem_id="scan-yaw")
                            with gr.Row():
                                offsets = [gr.Slider(-MAX_SHIFT, MAX_SHIFT, value=0, step=0.01,
                                                     label=f"Offset {axis}", elem_id=f"scan-offset-{axis}")
                                           for axis in "xyz"]
                            canonical_downloads = gr.Checkbox(False, label="Downloads in the canonical frame "
                                                              "(default: the scan's own frame and units)",
                                                              elem_id="canonical-downloads")
                        with gr.Accordion("Make a scan from a benchmark shape", open=False, elem_id="make-scan"):
                            with gr.Row():
                                bench_class = gr.Dropdown(list(CLASSES), value="chair", label="Class")
                                bench_index = gr.Number(3, label="Shape index", precision=0, minimum=0, maximum=100_000)
                            method = gr.Radio(list(SCAN_METHODS), value="view", label="How",
                                              info="plane: cut with a plane; view: what one depth camera sees")
                            with gr.Row():
                                azimuth = gr.Slider(-180, 180, value=35, step=5, label="Azimuth (deg)")
                                elevation = gr.Slider(-90, 90, value=25, step=5, label="Elevation (deg)")
                            offset = gr.Slider(-0.9, 0.9, value=0.0, step=0.05, label="Cut offset (plane only)")
                            make_btn = gr.Button("Make scan", elem_id="make-scan-btn")
                        with gr.Accordion("More about scans", open=False):
                            gr.Markdown(SCAN_MORE)
                with gr.Accordion("Settings", open=False, elem_id="settings"):
                    with gr.Row():
                        seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=2**31 - 1)
                        randomize = gr.Checkbox(True, label="Randomize seed")
                    steps = gr.Slider(*LIMITS.steps, value=DEFAULTS.num_steps, step=1, label="Decoding steps")
                    with gr.Row():
                        temp_start = gr.Slider(*LIMITS.temperature, value=DEFAULTS.temperature[0], step=0.05,
                                               label="Temperature (first step)")
                        temp_end = gr.Slider(*LIMITS.temperature, value=DEFAULTS.temperature[1], step=0.05,
                                             label="Temperature (last step)")
                    with gr.Row():
                        top_k = gr.Slider(*LIMITS.top_k, value=DEFAULTS.top_k, step=1, label="Top-k (0: all)")
                        guidance = gr.Slider(*LIMITS.guidance, value=DEFAULTS.cfg_scale, step=0.1,
                                             label="Guidance (CFG scale at the end)")
                    with gr.Row():
                        schedule = gr.Dropdown(list(SCHEDULES), value=DEFAULTS.schedule, label="Schedule")
                        policy = gr.Dropdown(list(POLICIES), value=DEFAULTS.policy, label="Commit policy")

            # ---- the decoding, step by step ----
            with gr.Column(scale=5, min_width=420):
                idle = idle_payload("Pick a class and press Generate, or complete a partial scan.", pipe.layout)
                viewer = gr.HTML(to_json(idle),
                                 html_template=VIEWER_TEMPLATE, css_template=VIEWER_CSS, js_on_load=VIEWER_JS,
                                 head=viewer_head(f"/gradio_api/file={PLOTLY_JS}"), apply_default_css=False,
                                 elem_id="step-viewer", label="Decoding")
                with gr.Row(equal_height=True):
                    step_slider = gr.Slider(1, DEFAULTS.num_steps, value=1, step=1, label="Replay step",
                                            interactive=False, scale=4, elem_id="step-slider")
                    play_btn = gr.Button("▶ Play", scale=1, min_width=70, size="sm", elem_id="play-btn")
                color_by = gr.Radio(list(COLOR_MODES), value="step", label="Colour committed tokens by")
                with gr.Accordion("Edit this shape", open=False, elem_id="edit"):
                    gr.Markdown(EDIT_NOTE)
                    resample_btn = gr.Button("Resample from the replayed step", elem_id="resample-btn")
                    region = gr.Dropdown([*REGIONS, CUSTOM_BOX], value="back", label="Region", elem_id="region")
                    bounds = []
                    for axis in "xyz":
                        with gr.Row():
                            lo, hi = REGIONS["back"][0]["xyz".index(axis)], REGIONS["back"][1]["xyz".index(axis)]
                            bounds += [gr.Slider(-1, 1, value=lo, step=0.05, label=f"{axis} min", interactive=False),
                                       gr.Slider(-1, 1, value=hi, step=0.05, label=f"{axis} max", interactive=False)]
                    region_btn = gr.Button("Regenerate region", elem_id="region-btn")

            # ---- the result ----
            with gr.Column(scale=3, min_width=320):
                mesh_view = gr.Model3D(label="Final mesh", elem_id="mesh-viewer", height=380, interactive=False,
                                       camera_position=MESH_CAMERA)
                seed_used = gr.Number(label="Seed used", interactive=False, precision=0)
                downloads = gr.File(label="Downloads: the mesh (.glb .obj .stl _mesh.ply) and 2048 surface points "
                                          "(_points.ply _points.npy)", file_count="multiple", interactive=False,
                                    elem_id="downloads")
                with gr.Accordion("Step record (tokens of the replayed step)", open=False):
                    record = gr.JSON(label="Step record")

        # ---- two settings side by side ----
        with gr.Accordion("Compare two settings (same class and seed, side by side)", open=False, elem_id="compare"):
            gr.Markdown(COMPARE_NOTE)
            with gr.Row():
                compare_setting = gr.Dropdown(list(COMPARABLE), value="guidance", label="Setting", scale=1)
                value_a = gr.Textbox("1", label="A", scale=1, elem_id="compare-a")
                value_b = gr.Textbox("4", label="B", scale=1, elem_id="compare-b")
                compare_btn = gr.Button("Compare", variant="primary", scale=1, elem_id="compare-btn")
            compare_info = gr.Markdown(elem_id="compare-info")
            with gr.Row():
                viewers_ab = [gr.HTML(to_json(idle_payload(f"{side}: press Compare.", pipe.layout)),
                                      html_template=VIEWER_TEMPLATE, css_template=VIEWER_CSS, js_on_load=VIEWER_JS,
                                      apply_default_css=False, elem_id=f"compare-viewer-{side.lower()}",
                                      label=f"Decoding {side}") for side in "AB"]

        # ---- events ----
        settings = [seed, randomize, steps, temp_start, temp_end, top_k, guidance, schedule, policy, color_by]
        placed = [scan_class, scan_frame, up_axis]                  # what the automatic placement depends on
        placing = [*placed, yaw, scan_scale, *offsets]              # ... and the hand-set values
        stream_out = [viewer, seed_used, downloads, step_slider, run]
        decode = dict(concurrency_id="decode", concurrency_limit=config.decode_concurrency)
        light = dict(concurrency_id="light", concurrency_limit=config.light_concurrency)

        play = play_btn.click(h.play, [color_by, run], [viewer, step_slider], api_visibility="private", **light)
        for button, fn, inputs, name, check in (
                (generate_btn, h.generate, [class_name, *settings], "generate", None),
                (complete_btn, h.complete, [scan_file, *placing, canonical_downloads, *settings], "complete",
                 h.check_scan_input),
                (image_btn, h.generate_image, [image_file, image_class, confidence, *settings], "generate_image",
                 h.check_image_input),
                (resample_btn, h.resample, [step_slider, run, *settings], "resample", None),
                (region_btn, h.regenerate_region, [region, *bounds, run, *settings], "regenerate_region", None)):
            button.click(None, None, mesh_view, js="() => null", queue=False)    # in the browser only
            # a Model3D value sent only in a stream's last yield never renders: set it afterwards
            button.click(fn, inputs, stream_out, api_name=name, cancels=[play], validator=check, **decode).success(
                h.show_mesh, run, mesh_view, api_visibility="private", **light)

        region.input(region_bounds, region, bounds, api_visibility="private", queue=False)
        compare_btn.click(h.compare, [class_name, compare_setting, value_a, value_b, *settings],
                          [*viewers_ab, compare_info], api_name="compare", **decode)
        step_slider.input(h.replay, [step_slider, color_by, run], [viewer, record], api_name="replay",
                          trigger_mode="always_last", **light)
        color_by.input(h.replay, [step_slider, color_by, run], [viewer, record], api_visibility="private", **light)
        # placing a scan: the automatic search when the file, class, frame or up axis change; the hand
        # controls only move the placed points (the placement is kept by the handlers)
        place_out = [scan_plot, scan_info, yaw, scan_scale, *offsets]
        scan_file.change(h.place_scan, [scan_file, *placed], place_out, api_name="place_scan",
                         trigger_mode="always_last", **light)
        for control in placed:
            control.input(h.place_scan, [scan_file, *placed], place_out, api_visibility="private",
                          trigger_mode="always_last", **light)
        for control in (yaw, scan_scale, *offsets):
            control.input(h.preview_placement, [scan_file, *placing], [scan_plot, scan_info],
                          api_name="preview_placement" if control is yaw else None,
                          api_visibility="public" if control is yaw else "private",
                          trigger_mode="always_last", **light)
        # a scan made here is a cut of a benchmark shape: already in the canonical frame (set in the browser
        # before the new file arrives, so that its placement reads it)
        make_btn.click(None, None, scan_frame, js="() => 'canonical'", queue=False)
        make_btn.click(h.make_scan, [bench_class, bench_index, method, azimuth, elevation, offset], scan_file,
                       api_name="make_scan", **light)
        image_inputs = [image_file, image_class, confidence]
        image_file.change(h.image, image_inputs, [image_seen, image_status], api_name="image", **light)
        for control in (image_class, confidence):
            control.input(h.image, image_inputs, [image_seen, image_status], api_visibility="private", **light)
        demo.unload(h.end_session)

    demo.queue(max_size=config.queue_size, default_concurrency_limit=config.light_concurrency)
    demo.smart3d = h
    h.start_janitor(lambda gone: forget_sessions(demo, h, gone))
    return demo


def region_bounds(region: str) -> list:
    """The six bound sliders for a region choice: a named half's box, locked; the custom box, editable."""
    if region not in REGIONS:
        return [gr.Slider(interactive=True) for _ in range(6)]
    lo, hi = REGIONS[region]
    return [gr.Slider(value=v, interactive=False) for pair in zip(lo, hi) for v in pair]


def forget_sessions(demo: gr.Blocks, h: Handlers, gone: list[str]) -> list[str]:
    """Drop what gradio keeps for sessions that are over: those whose files were just swept (``gone``),
    those that said goodbye ``end_grace_s`` ago and those idle ``state_ttl_s``, unless decoding.

    Gradio keeps a ``SessionState`` (a copy of the page's configuration, about 120 kB, plus every
    value sent to the session) for each session hash it has seen, for up to 10 000 sessions and an
    hour after a tab closes: the app's memory grew by that much per session. Returns the session
    hashes dropped."""
    holder = getattr(demo, "state_holder", None)          # set when the app is launched
    if holder is None:
        return []
    now, cfg, gone = datetime.now(), h.config, set(gone)
    dropped = []
    for sid in list(holder.session_data):
        state = holder.session_data.get(sid)
        idle = (now - holder.time_last_used.get(sid, now)).total_seconds()
        over = (SessionFiles._safe(sid) in gone or idle >= cfg.state_ttl_s
                or (state is not None and state.is_closed and idle >= cfg.end_grace_s))
        if not over or h.files.is_active(sid):
            continue
        holder.delete_state(sid)                           # runs the gr.State delete callbacks
        with holder.lock:
            holder.session_data.pop(sid, None)
            holder.time_last_used.pop(sid, None)
        caching.clear_session_caches(sid)
        dropped.append(sid)
    return dropped


def launch_options(config: AppConfig = AppConfig()) -> dict:
    """``demo.launch`` arguments that belong with ``build_demo`` (never ``share``)."""
    return {"max_file_size": f"{config.max_file_mb:g}mb", "css": PAGE_CSS, "allowed_paths": [str(SCANS_DIR), str(IMAGES_DIR)],
            "show_error": False, "share": False,
            "app_kwargs": {"middleware": [Middleware(RequestGuard)]},    # checks every API call (app.guard)
            # gradio's self-check after start (a HEAD request with a 3 s timeout) fails on a busy machine
            # and then stops a server that is up; gradio 6.31 has only this private switch for it
            "_frontend": False}
