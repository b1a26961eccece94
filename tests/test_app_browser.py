"""The app in a real browser: Playwright driving Debian's Chromium, headless (no ``playwright install``).

For each input tab: generate with the default settings (25 steps), wait for the final step caption
in the step viewer, check that the mesh viewer shows something and that the GLB download reloads
as a watertight mesh. Runs on tiny random weights whose decoder is pinned to a solid (plumbing).
Saves a screenshot of the Class tab to ``$SMART3D_SCREENSHOT`` (default: the temp folder); the
README's ``assets/app_screenshot.png`` is refreshed with
``SMART3D_SCREENSHOT=assets/app_screenshot.png python -m pytest tests/test_app_browser.py -k class_tab``.
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
    weights = write_tiny_weights(tmp_path_factory.mktemp("weights"))
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
    assert caption.startswith(f"step {DEFAULT_STEPS}/{DEFAULT_STEPS} - 576/576 tokens known: ") and caption.endswith(" 0 masked")
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


def test_partial_scan_tab(page):
    page.get_by_role("tab", name="Partial scan").click()
    page.get_by_text("chair_plane_cut.ply (chair)").click()             # an example scan
    page.wait_for_function("document.querySelector('#scan-info').innerText.includes('chair_plane_cut.ply')",
                           timeout=180_000)
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
