"""The backprop page driven in a real headless Chromium: next N times gives backward()'s gradients, back undoes,
clicking an input highlights exactly its paths, and the page logs no error and requests nothing."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from microgradx import Value, step, topological_order
from microgradx.examples import example3 as build_example3
from microgradx.examples import two_paths

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def _find(names):
    return next((p for p in map(shutil.which, names) if p), None)


@pytest.fixture(scope="module")
def browser():
    binary, driver_exe = _find(BROWSERS), _find(("chromedriver",))
    if not binary or not driver_exe:
        pytest.skip("no headless browser: install Chromium and its driver (Debian: apt-get install chromium "
                    "chromium-driver); .ci/run does this")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,900", "--no-first-run", "--disable-background-networking"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_exe), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def open_page(driver, out, tmp_path, name="page.html"):
    path = step(out).to_html(tmp_path / name).save(tmp_path / name)
    driver.get_log("performance")  # drop what earlier pages logged
    driver.get_log("browser")
    driver.get(path.as_uri())
    return path


def click(driver, selector, times=1):
    from selenium.webdriver.common.by import By

    el = driver.find_element(By.CSS_SELECTOR, selector)
    for _ in range(times):
        el.click()


def totals(driver):
    """{topological index: (text, value)} from the side table, as the reader sees it."""
    rows = driver.execute_script(
        "return Array.from(document.querySelectorAll('tr[data-node]')).map(tr => [tr.dataset.node, "
        "tr.querySelector('td.mgx-s').textContent, tr.querySelector('td.mgx-s').getAttribute('data-value')]);")
    return {int(i): (text, None if v is None else float(v)) for i, text, v in rows}


def central_difference(build, k, h=1e-6):
    """d out / d leaf k by central differences on freshly built graphs (float64)."""
    def f(delta):
        out, leaves = build(delta=(k, delta))
        return out.data
    return (f(h) - f(-h)) / (2 * h)


def example3(delta=None):
    vals = dict(w1=0.75, w2=0.5, x=2.0, y=0.25)
    names = list(vals)
    if delta:
        vals[names[delta[0]]] += delta[1]
    ex = build_example3(**vals)
    return ex.J, [getattr(ex, n) for n in names]


def shared(delta=None):
    """A graph with shared subexpressions and a node used twice by one op."""
    base = [0.7, -1.3, 0.4]
    if delta:
        base[delta[0]] += delta[1]
    a, b, c = (Value(v, label=n) for v, n in zip(base, "abc", strict=True))
    u = a * b
    v = (u + c).tanh()
    w = v * v + u.sin() * a
    out = w * c + v
    out.label = "out"
    return out, [a, b, c]


@pytest.mark.parametrize("build", [example3, shared])
def test_next_n_times_shows_the_gradients_of_backward(browser, tmp_path, build):
    out, leaves = build()
    open_page(browser, out, tmp_path)
    n = len(topological_order(out))
    assert totals(browser) and all(t == ("", None) for t in totals(browser).values())  # forward values only
    click(browser, ".mgx-next", n)
    shown = totals(browser)
    ref_out, ref_leaves = build()
    ref_out.backward()
    for i, node in enumerate(topological_order(ref_out)):
        text, value = shown[i]
        assert value == node.grad and "so far" not in text
    for k, leaf in enumerate(ref_leaves):  # and backward is right: central differences on the same function
        assert math.isclose(leaf.grad, central_difference(build, k), rel_tol=1e-6, abs_tol=1e-9)
    status = browser.find_element("css selector", ".mgx-status")
    assert status.get_attribute("data-step") == str(n)
    assert not browser.find_element("css selector", ".mgx-back").get_property("disabled")
    assert browser.find_element("css selector", ".mgx-next").get_property("disabled")


def test_each_step_writes_the_chain_rule_and_the_contributions_on_the_edges(browser, tmp_path):
    ex = build_example3()
    open_page(browser, ex.J, tmp_path)
    order = topological_order(ex.J)
    index = {id(n): i for i, n in enumerate(order)}
    s = step(ex.J)
    for ev in s:
        click(browser, ".mgx-next")
        chain = browser.find_element("css selector", ".mgx-chain").text
        me = index[id(ev.node)]
        current = browser.execute_script(
            "return Array.from(document.querySelectorAll('.mgx-current')).map(e => e.getAttribute('data-mgx-value')"
            " || e.getAttribute('data-mgx-op') || 'row');")
        assert str(me) in current  # the current node is the one the event processes
        hot = browser.execute_script("return Array.from(document.querySelectorAll('g.edge.mgx-hot[data-mgx-edge]'))"
                                     ".map(e => e.getAttribute('data-mgx-edge'));")
        assert sorted(hot) == sorted(f"{me}_{j}" for j in range(len(ev.node.parents)))
        for j, z in enumerate(ev.partials):
            # Written independently of the page: S(parent) += S(node) · z(parent, node) = S · z.
            assert f"· {z:.5g} = {ev.grad * z:.5g}" in chain
            label = browser.execute_script(
                f"return document.querySelector('[data-mgx-edge=\"{me}_{j}\"] text.mgx-contrib').textContent;")
            assert label == f"S·z = {ev.grad * z:.5g}"
    # Example 3 of "Gradient Descent Methods for Training Neural Networks" (S. Slettevold): the chain-rule line
    # S(z1) += S(g(z1)) · z(z1, g(z1)) = 0.084135 · 0.14915 appears on the step that finishes g(z1).
    s2 = step(ex.J)
    browser.find_element("css selector", ".mgx-page").send_keys("\ue011")  # Home
    for ev in s2:
        browser.find_element("css selector", ".mgx-page").send_keys("\ue014")  # right arrow
        if ev.node.label == "g(z1)":
            break
    assert "S(z1) += S(g(z1)) · z(z1, g(z1)) = 0.084135 · 0.14915" in browser.find_element(
        "css selector", ".mgx-chain").text


def test_back_undoes_each_step(browser, tmp_path):
    out, _ = shared()
    open_page(browser, out, tmp_path)
    n = len(topological_order(out))
    seen = [totals(browser)]
    for _ in range(n):
        click(browser, ".mgx-next")
        seen.append(totals(browser))
    page = browser.find_element("css selector", ".mgx-page")
    for k in range(n, 0, -1):
        page.send_keys("\ue012")  # left arrow
        assert totals(browser) == seen[k - 1]
    assert browser.find_element("css selector", ".mgx-back").get_property("disabled")
    page.send_keys("\ue012")
    assert totals(browser) == seen[0]


def all_paths(out, leaf, order):
    """Every path leaf -> out as a set of edges (child index, parent slot), by plain recursion (no library)."""
    index = {id(n): i for i, n in enumerate(order)}
    found = []

    def walk(node, edges):
        if node is leaf:
            found.append(edges)
            return
        for k, p in enumerate(node.parents):
            walk(p, edges | {(index[id(node)], k)})
    walk(out, frozenset())
    return found


def highlighted(driver):
    return set(driver.execute_script(
        "return Array.from(document.querySelectorAll('g.edge.mgx-path[data-mgx-edge]'))"
        ".map(e => e.getAttribute('data-mgx-edge'));"))


@pytest.mark.parametrize("build", [two_paths, shared])
def test_clicking_an_input_highlights_exactly_its_paths_and_their_sum_is_the_gradient(browser, tmp_path, build):
    out, leaves = build()
    leaves = [leaves] if isinstance(leaves, Value) else leaves
    open_page(browser, out, tmp_path)
    order = topological_order(out)
    out.backward()
    for leaf in leaves:
        i = order.index(leaf)
        click(browser, f'[data-mgx-value="{i}"]')
        expect = all_paths(out, leaf, order)
        assert highlighted(browser) == {f"{c}_{k}" for edges in expect for c, k in edges}
        items = browser.find_elements("css selector", ".mgx-paths li")
        assert len(items) == len(expect)
        for li in items:  # one path at a time: exactly one of the enumerated edge sets
            li.click()
            assert {tuple(map(int, e.split("_"))) for e in highlighted(browser)} in [set(p) for p in expect]
        total = browser.find_element("css selector", ".mgx-sum").text
        assert f"= {leaf.grad:.5g}" in total


def test_no_console_errors_and_no_network_requests(browser, tmp_path):
    ex = build_example3()
    path = open_page(browser, ex.J, tmp_path)
    click(browser, ".mgx-next", 4)
    click(browser, '[data-mgx-value="0"]')
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    requests = []
    for entry in browser.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            requests.append(msg["params"]["request"]["url"])
    assert requests and set(requests) == {path.as_uri()}  # the page itself, nothing else
    assert browser.execute_script("return performance.getEntriesByType('resource').length;") == 0


def test_embedded_page_takes_arrow_keys_only_when_focused(browser, tmp_path):
    o, _ = two_paths()
    page = step(o).to_html()
    doc = tmp_path / "deck.html"
    doc.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body><section><h1>Slide</h1>"
                   f"{page.fragment}</section><section>next slide</section></body></html>", encoding="utf-8")
    browser.get(doc.as_uri())
    from selenium.webdriver.common.action_chains import ActionChains
    ActionChains(browser).send_keys("\ue014").perform()  # keys go to the deck, not the page
    assert browser.find_element("css selector", ".mgx-status").get_attribute("data-step") == "0"
    browser.find_element("css selector", ".mgx-page").send_keys("\ue014")
    assert browser.find_element("css selector", ".mgx-status").get_attribute("data-step") == "1"


def test_running_totals_grow_on_the_parents_step_by_step(browser, tmp_path):
    out, _ = shared()
    open_page(browser, out, tmp_path)
    ref, _ = shared()
    ref.backward()
    order = topological_order(ref)
    index = {id(n): i for i, n in enumerate(order)}
    processed = []
    for node in reversed(order):  # the backward pass visits the nodes in reverse topological order
        click(browser, ".mgx-next")
        processed.append(node)
        shown = totals(browser)
        done = {index[id(n)] for n in processed}
        # S so far of every node = sum over the processed nodes j that use it of S(j) * z(node, j).
        expect: dict[int, float] = {}
        for j in processed:
            for p, z in zip(j.parents, j.partials, strict=True):
                expect[index[id(p)]] = expect.get(index[id(p)], 0.0) + j.grad * z
        for i, (text, value) in shown.items():
            if i in done:
                assert value == order[i].grad and "so far" not in text
            elif i in expect:
                assert math.isclose(value, expect[i], rel_tol=1e-12, abs_tol=1e-15) and "so far" in text
            else:
                assert (text, value) == ("", None)
