"""The app in a real browser: Playwright driving Debian's Chromium, headless (no ``playwright install``).

For each input tab: generate with the default settings (25 steps), wait for the final step caption
in the step viewer, check that the mesh viewer shows something and that the GLB download reloads
as a watertight mesh. Runs on tiny random weights whose decoder is pinned to a solid (plumbing).
Saves a screenshot of the Class tab to ``$SMART3D_SCREENSHOT`` (default: the temp folder); the
README's ``assets/app_screenshot.png`` is refreshed with
``SMART3D_SCREENSHOT=assets/app_screenshot.png python -m pytest tests/test_app_browser.py -k class_tab``.
Replaying steps 5, 15 and 25 must show the forming surface; the strip of those three views goes to
``$SMART3D_STRIP``, and the README's ``assets/forming_strip.png`` is made with the shipped weights:
``SMART3D_APP_WEIGHTS=weights SMART3D_STRIP=assets/forming_strip.png python -m pytest tests/test_app_browser.py -k "class_tab or forming"``.
"""

import io
import os
import tempfile
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import trimesh  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = Path(os.environ.get("SMART3D_SCREENSHOT", Path(tempfile.gettempdir()) / "smart3d_app_screenshot.png"))
STRIP = Path(os.environ.get("SMART3D_STRIP", Path(tempfile.gettempdir()) / "smart3d_forming_strip.png"))
WEIGHTS = os.environ.get("SMART3D_APP_WEIGHTS")       # e.g. "weights": the shipped model (for the README strip)
DEFAULT_STEPS = 25

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                                   reason=f"{CHROMIUM} not found (apt-get install chromium)")]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    from app import AppConfig, build_demo, launch_options
    from app.tiny_weights import write_tiny_weights
    from smart3d.pipeline import load_pipeline

    # Plumbing test: tiny weights whose decoder is pinned to a solid, so the mesh viewer has a shape
    # to show whatever the sampled tokens. The shipped (barely trained) model can decode to small
    # fragments; tests/test_shipped_weights.py checks those weights at a fixed seed.
    weights = WEIGHTS or write_tiny_weights(tmp_path_factory.mktemp("weights"))
    config = AppConfig()
    demo = build_demo(load_pipeline(weights, "cpu"), config)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=None, quiet=True, **launch_options(config))
    yield url
    demo.close()
    demo.smart3d.close()


@pytest.fixture(scope="module")
def page(app_url):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(app_url)
        page.wait_for_function("window.smart3dViewer && window.smart3dViewer.drawn.includes('idle')", timeout=180_000)
        page.errors = errors
        yield page
        browser.close()


def decode_and_check(page, button: str) -> None:
    """Click ``button``, wait for step T/T and the mesh; check the drawn steps and the GLB download."""
    before = page.evaluate("window.smart3dViewer.last")
    page.click(button)
    page.wait_for_function("([before, T]) => window.smart3dViewer.last !== before"
                           " && window.smart3dViewer.caption.startsWith(`step ${T}/${T} - `)",
                           arg=[before, DEFAULT_STEPS], timeout=480_000)
    caption = page.inner_text("#step-viewer .s3d-caption")
    assert caption.startswith(f"step {DEFAULT_STEPS}/{DEFAULT_STEPS} - 576/576 tokens known: ") and "; 0 masked" in caption
    run = page.evaluate("window.smart3dViewer.last").rsplit(":", 2)[0]
    drawn = {k for k in page.evaluate("window.smart3dViewer.drawn") if k.startswith(run + ":")}
    assert len(drawn) >= 0.8 * DEFAULT_STEPS, f"only {len(drawn)} of {DEFAULT_STEPS} steps were drawn: {sorted(drawn)}"

    # the mesh viewer: a canvas that is not blank
    page.wait_for_selector("#mesh-viewer canvas", timeout=180_000)
    from PIL import Image

    filled = 0.0
    for _ in range(40):                  # software WebGL on a loaded machine can take a while to draw
        page.wait_for_timeout(2500)
        shot = np.asarray(Image.open(io.BytesIO(page.locator("#mesh-viewer canvas").screenshot())).convert("L"))
        filled = (np.abs(shot.astype(float) - np.median(shot)) > 20).mean()
        if filled > 0.02:
            break
    assert filled > 0.02, f"mesh viewer looks empty ({100 * filled:.1f}% of pixels drawn)"

    # the GLB download reloads as a watertight mesh
    link = page.locator("#downloads a[href$='.glb']").first
    with page.expect_download() as download:
        link.click()
    path = download.value.path()
    mesh = trimesh.load(path, file_type="glb", force="mesh")
    assert len(mesh.faces) > 0 and mesh.is_watertight
    assert "smart3d" in trimesh.load(path, file_type="glb").metadata


def test_class_tab(page):
    page.get_by_role("tab", name="Class").click()
    decode_and_check(page, "#generate-btn")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(500)
    page.screenshot(path=str(SCREENSHOT), full_page=False)
    assert page.errors == []


def scene_shot(page):
    from PIL import Image

    return Image.open(io.BytesIO(page.locator("#step-viewer .s3d-scene").screenshot())).convert("RGB")


def test_forming_surface_is_drawn_at_steps_5_15_25(page):
    """After the Class tab's run: replaying steps 5, 15 and 25 draws the forming surface (points coloured
    by step over a blank scene); the three views are saved side by side."""
    from PIL import Image

    run = page.evaluate("window.smart3dViewer.last").rsplit(":", 2)[0].removesuffix("-replay")
    shots = []
    for k in (5, 15, DEFAULT_STEPS):
        box = page.locator("#step-slider input[type=number]")
        box.fill(str(k))
        box.press("Enter")
        page.wait_for_function("(key) => window.smart3dViewer.last === key", arg=f"{run}-replay:{k}:step",
                               timeout=120_000)
        page.wait_for_timeout(1500)                                    # the WebGL frame after Plotly.react
        shot = scene_shot(page)
        pixels = np.asarray(shot.convert("L")).astype(float)
        drawn = (np.abs(pixels - np.median(pixels)) > 30).mean()
        assert drawn > 0.01, f"step {k}: the scene looks empty ({100 * drawn:.2f}% of pixels drawn)"
        assert page.inner_text("#step-viewer .s3d-caption").startswith(f"step {k}/")
        shots.append(shot)
    strip = Image.new("RGB", (sum(s.width for s in shots), max(s.height for s in shots)), "white")
    x = 0
    for s in shots:
        strip.paste(s, (x, 0))
        x += s.width
    STRIP.parent.mkdir(parents=True, exist_ok=True)
    strip.save(STRIP)
    assert page.errors == []


def test_downloads_show_whole_names_and_no_remove_buttons(page):
    """After the Class tab's run: every download row shows its whole name (mesh and points PLY tell
    apart) and no button that would remove it from the list."""
    rows = page.evaluate("""() => [...document.querySelectorAll('#downloads td.filename')].map(td => ({
        name: td.getAttribute('aria-label'), text: td.innerText.replace(/\\s+/g, ''),
        clipped: td.scrollWidth > td.clientWidth + 1}))""")
    assert len(rows) == 6 and all(r["text"] == r["name"] and not r["clipped"] for r in rows), rows
    assert any(r["name"].endswith("_mesh.ply") for r in rows) and any(r["name"].endswith("_points.ply") for r in rows)
    assert page.locator('#downloads button[aria-label="Remove this file"]:visible').count() == 0


@pytest.mark.parametrize("tab, button", [("Class", "#generate-btn"), ("Image", "#image-btn"),
                                         ("Partial scan", "#complete-btn")])
def test_input_button_and_viewer_in_view_at_1366x768(page, tab, button):
    page.set_viewport_size({"width": 1366, "height": 768})
    try:
        page.evaluate("window.scrollTo(0, 0)")
        page.get_by_role("tab", name=tab).click()
        page.wait_for_timeout(300)
        btn = page.locator(button).bounding_box()
        scene = page.locator("#step-viewer .s3d-scene").bounding_box()
        assert btn is not None and btn["y"] >= 0 and btn["y"] + btn["height"] <= 768, f"{tab}: button at {btn}"
        visible = min(scene["y"] + scene["height"], 768) - max(scene["y"], 0)
        assert visible >= 0.75 * scene["height"], f"{tab}: only {visible:.0f} px of the viewer in view ({scene})"
    finally:
        page.set_viewport_size({"width": 1400, "height": 1000})


def test_a_missing_input_is_marked_on_that_input_only(page):
    """Complete without a scan, then Generate from image without an image: each message sits on its own
    upload; no output (viewer, slider, seed, downloads) gets an error badge and no error toast piles up."""
    for tab, button, target, words in (("Partial scan", "#complete-btn", "scan-file", "Upload a scan"),
                                       ("Image", "#image-btn", "image-file", "Upload an image")):
        page.get_by_role("tab", name=tab).click()
        page.click(button)
        page.wait_for_function("(id) => document.querySelector(`#${id} .validation-error`)", arg=target,
                               timeout=60_000)
        marked = page.evaluate("""() => [...document.querySelectorAll('.validation-error, .error')]
            .filter(e => e.offsetParent !== null || e.closest('[id]')).map(e => [(e.closest('[id]') || {}).id,
            e.innerText])""")
        assert [m for m in marked if m[0] != "scan-file" and m[0] != "image-file"] == [], marked
        assert any(m[0] == target and words in m[1] for m in marked), marked
    assert page.locator(".toast-body").count() == 0
    page.get_by_role("tab", name="Class").click()


def test_compare_draws_both_settings_side_by_side(page):
    page.get_by_role("tab", name="Class").click()
    page.get_by_text("Compare two settings").click()
    page.click("#compare-btn")
    for side, label in (("a", "A: guidance 1 - "), ("b", "B: guidance 4 - ")):
        page.wait_for_function("([sel, start, T]) => document.querySelector(sel).innerText.startsWith(start + "
                               "`step ${T}/${T} - 576/576`)",
                               arg=[f"#compare-viewer-{side} .s3d-caption", label, DEFAULT_STEPS], timeout=480_000)
    assert page.evaluate("window.smart3dViewer.caption").startswith("step ")      # the main viewer's record stays
    assert page.errors == []


PREVIEW_POINTS = """() => { const g = document.querySelector('#scan-preview .js-plotly-plot');
    if (!g || !g.data) return null;
    return g.data.filter(t => t.mode === 'markers').flatMap(t => t.x.map((x, i) => [x, t.y[i], t.z[i]])); }"""


def test_scan_placement_preview_and_controls(page, tmp_path_factory):
    """A metres, z-up sensor scan of a benchmark chair, uploaded with its class: the automatic placement
    is described and previewed inside the canonical box; the placement controls are there, and turning
    or scaling the scan redraws the preview accordingly."""
    from smart3d.dataset import make_sample
    from smart3d.intake import sensor_scan

    scan, _, _ = sensor_scan(make_sample("chair", 19).dense.astype(np.float64), height=0.85,
                             generator=np.random.default_rng(3))
    path = tmp_path_factory.mktemp("scan") / "chair_lidar.npy"
    np.save(path, scan)
    page.get_by_role("tab", name="Partial scan").click()
    page.locator("#scan-frame").get_by_text("place automatically").click()
    page.click("#scan-class input")
    page.get_by_role("option", name="chair", exact=True).click()
    page.wait_for_function("document.querySelector('#scan-class input').value === 'chair'", timeout=30_000)
    page.set_input_files("#scan-file input[type=file]", str(path))
    page.wait_for_function("document.querySelector('#scan-info').innerText.includes('chair_lidar.npy')",
                           timeout=180_000)
    info = page.inner_text("#scan-info")
    assert "ground plane removed" in info and "to template chair/" in info and "patches" in info, info
    page.wait_for_function(f"({PREVIEW_POINTS})() !== null", timeout=60_000)
    placed = np.array(page.evaluate(PREVIEW_POINTS), dtype=float)
    assert len(placed) > 1000 and (np.abs(placed) <= 1.0).all(1).mean() > 0.97     # inside the canonical box
    for control in ("up-axis", "scan-yaw", "scan-scale", "scan-offset-x", "scan-offset-y", "scan-offset-z",
                    "canonical-downloads"):
        assert page.locator(f"#{control}").is_visible(), control

    def set_control(control: str, value: str) -> np.ndarray:
        before = page.evaluate(PREVIEW_POINTS)
        box = page.locator(f"#{control} input[type=number]")
        box.fill(value)
        box.press("Enter")
        page.wait_for_function(f"(before) => JSON.stringify(({PREVIEW_POINTS})()) !== JSON.stringify(before)",
                               arg=before, timeout=120_000)
        return np.array(page.evaluate(PREVIEW_POINTS), dtype=float)

    yaw = float(info.split("yaw ")[1].split(" ")[0])
    turned = set_control("scan-yaw", "90")                             # yaw(90): x' = z, z' = -x
    now = float(page.inner_text("#scan-info").split("yaw ")[1].split(" ")[0])
    assert abs((now - yaw - 90 + 180) % 360 - 180) <= 1, (yaw, now)    # the description follows (to a degree)
    assert len(turned) == len(placed)
    np.testing.assert_allclose(np.sort(turned[:, 0]), np.sort(placed[:, 2]), atol=2e-3)
    np.testing.assert_allclose(np.sort(turned[:, 1]), np.sort(placed[:, 1]), atol=2e-3)
    halved = set_control("scan-scale", "0.5")                          # about the box's centre
    np.testing.assert_allclose(np.sort(halved[:, 1]), np.sort(0.5 * placed[:, 1]), atol=2e-3)
    assert page.errors == []


def test_partial_scan_tab(page):
    page.get_by_role("tab", name="Partial scan").click()
    page.get_by_text("chair_plane_cut.ply (chair)").click()             # an example scan
    page.wait_for_function("document.querySelector('#scan-info').innerText.includes('chair_plane_cut.ply')",
                           timeout=180_000)
    assert page.locator("#scan-file .validation-error:visible").count() == 0   # an earlier "no scan" mark goes
    page.get_by_role("button", name="Make a scan from a benchmark shape").click()   # or make one
    page.click("#make-scan-btn")
    page.wait_for_function("document.querySelector('#scan-info').innerText.includes('scan_chair_3_view')",
                           timeout=180_000)
    assert "patches" in page.inner_text("#scan-info")
    page.wait_for_selector("#scan-preview .js-plotly-plot", timeout=120_000)
    decode_and_check(page, "#complete-btn")
    assert page.errors == []


def test_image_tab(page):
    page.get_by_role("tab", name="Image").click()
    assert "one object on a plain background" in page.inner_text("#image-note")
    page.get_by_text("chair render").click()                           # an example image
    page.wait_for_function("document.querySelector('#image-status').innerText.includes('chair_render.png')",
                           timeout=180_000)
    assert "coarse tokens" in page.inner_text("#image-status")
    page.wait_for_selector("#image-seen img", timeout=60_000)           # what the encoder sees
    decode_and_check(page, "#image-btn")
    assert page.errors == []
