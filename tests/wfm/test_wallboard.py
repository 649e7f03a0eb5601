"""The wallboard in a real browser (Debian's headless Chromium driven by
Playwright): it renders a tile per pool, the numbers change when contacts
arrive, survey answers show as CSAT and NPS, and a screenshot is saved
(reports/wallboard.png)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvloop
from playwright.async_api import async_playwright, expect

from tests.support.client import ADM, GW, SUP, small_config
from tests.support.procs import start_replicas, stop_replicas, wait_ready

CHROMIUM = shutil.which("chromium")
REPORTS = Path(__file__).resolve().parents[2] / "reports"
# as the machine's probe runs it: no sandbox as root, no background network
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


async def scenario(redis_url: str, ws: str, log_dir: Path) -> dict[str, Any]:
    assert CHROMIUM, "chromium is missing: scripts/bootstrap installs it (Debian chromium)"
    replicas = start_replicas(redis_url, log_dir, 1)
    out: dict[str, Any] = {}
    try:
        await wait_ready(replicas)
        base = replicas[0].url + f"/v1/workspaces/{ws}"
        async with aiohttp.ClientSession() as http:
            cfg = small_config()
            cfg["surveys"] = {"kinds": ["csat", "nps"]}
            cfg["rules"] = [
                {"name": "loans", "when": {"intent": ["loan"]}, "stages": [{"pools": ["loans"]}]}
            ]
            async with http.put(base, json=cfg, headers=ADM) as r:
                assert r.status == 200
            async with http.put(
                base + "/agents/a1", json={"skills": {"loans": 5}}, headers=SUP
            ) as r:
                assert r.status == 200
            async with http.post(
                base + "/agents/a1/state", json={"state": "available"}, headers=SUP
            ) as r:
                assert r.status == 200
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                # no token (the prompt is dismissed): the stream is refused, the page says so
                anon = await browser.new_page()
                await anon.goto(base + "/wallboard")
                # (locator waits: the page's CSP forbids the eval wait_for_function uses)
                await expect(anon.locator("#status")).to_contain_text("token", timeout=10_000)
                out["no_token"] = await anon.locator("#status").text_content()
                page = await browser.new_page(viewport={"width": 1100, "height": 520})
                await page.goto(base + "/wallboard#token=demo-supervisor")
                waiting = page.locator('#tile-cards [data-field="waiting"]')
                await expect(waiting).to_have_text("0", timeout=10_000)
                out["url_after"] = page.url  # the token is taken out of the address
                out["tiles"] = await page.locator("section.tile h2").all_text_contents()
                out["loans_available"] = await page.locator(
                    '#tile-loans [data-field="agents_available"]'
                ).text_content()
                for i in range(3):
                    body = {"id": f"c{i}", "channel": "voice", "customer": {"id": f"x{i}"}}
                    async with http.post(base + "/contacts", json=body, headers=GW) as r:
                        assert r.status == 201
                await expect(waiting).to_have_text("3", timeout=5_000)
                out["waiting"] = await waiting.text_content()
                out["class"] = await page.locator("#tile-cards").get_attribute("class")
                # a served loans contact answers both surveys: the tile and the header show them
                body = {"id": "l1", "channel": "voice", "intent": "loan", "customer": {"id": "y"}}
                async with http.post(base + "/contacts", json=body, headers=GW) as r:
                    assert r.status == 201 and (await r.json())["agent"] == "a1"
                for action in ("accept", "complete"):
                    async with http.post(
                        f"{base}/contacts/l1/{action}", json={"agent_id": "a1"}, headers=SUP
                    ) as r:
                        assert r.status == 200, await r.text()
                for answer in ({"kind": "csat", "score": 4}, {"kind": "nps", "score": 6}):
                    async with http.post(
                        base + "/contacts/l1/rating", json=answer, headers=GW
                    ) as r:
                        assert r.status == 200, await r.text()
                csat = page.locator('#tile-loans [data-field="csat"]')
                await expect(csat).to_have_text("100% · 4.0 (1)", timeout=5_000)
                out["nps"] = await page.locator('#tile-loans [data-field="nps"]').text_content()
                out["cards_csat"] = await page.locator(
                    '#tile-cards [data-field="csat"]'
                ).text_content()
                out["surveys"] = await page.locator("#surveys").text_content()
                REPORTS.mkdir(exist_ok=True)
                shot = REPORTS / "wallboard.png"
                await page.screenshot(path=str(shot), full_page=True)
                out["screenshot"] = shot
                await browser.close()
    finally:
        stop_replicas(replicas)
    return out


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_wallboard_renders_and_updates_in_a_browser(
    redis_url: str, ws: str, tmp_path: Path
) -> None:
    out = uvloop.run(scenario(redis_url, ws, tmp_path))
    assert out["no_token"] is not None and "token" in out["no_token"]
    assert out["tiles"] == ["cards", "loans"]
    assert "token" not in out["url_after"]
    assert out["loans_available"] == "1"
    assert out["waiting"] == "3"
    assert "warn" in out["class"]  # contacts waiting and nobody available in cards
    assert out["nps"] == "-100 (1)"  # one answer, a detractor
    assert out["cards_csat"] == "\u2013"  # an en dash: nobody answered there
    assert out["surveys"] == "CSAT 100% · 4.0 (1) | NPS -100 (1) (last 15 min)"
    shot: Path = out["screenshot"]
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:4] == b"\x89PNG"
