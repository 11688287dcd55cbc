/* The backprop page's script: replays the recorded events (forward values first, then one event per step),
   rewrites the drawing's texts and classes, and lists an input's paths when it is clicked. No network. */
function microgradxPage(root) {
  "use strict";
  if (!root || root.dataset.mgxReady) { return; }
  root.dataset.mgxReady = "1";
  const data = JSON.parse(root.querySelector("script.mgx-data").textContent);
  const all = (sel) => Array.prototype.slice.call(root.querySelectorAll(sel));
  const one = (sel) => root.querySelector(sel);
  const N = data.events.length;
  const values = {}, ops = {}, outs = {}, edges = {}, rows = {};
  all("[data-mgx-value]").forEach((g) => { values[g.getAttribute("data-mgx-value")] = g; });
  all("[data-mgx-op]").forEach((g) => { ops[g.getAttribute("data-mgx-op")] = g; });
  all("[data-mgx-out]").forEach((g) => { outs[g.getAttribute("data-mgx-out")] = g; });
  all("[data-mgx-edge]").forEach((g) => { edges[g.getAttribute("data-mgx-edge")] = g; });
  all("tr[data-node]").forEach((tr) => { rows[tr.getAttribute("data-node")] = tr; });
  const contribOf = {};
  data.events.forEach((ev) => ev.parents.forEach((p) => { contribOf[ev.node + "_" + p.slot] = p.contrib; }));
  let t = 0;

  function setClass(el, name, on) { if (el) { el.classList.toggle(name, !!on); } }

  function show(step) {
    t = Math.max(0, Math.min(N, step));
    const S = {}, finished = {}, passed = {};
    for (let k = 0; k < t; k++) {
      const ev = data.events[k];
      S[ev.node] = { text: ev.S, value: ev.value };
      finished[ev.node] = true;
      ev.parents.forEach((p) => {
        if (p.total !== null) { S[p.node] = { text: p.total, value: p.totalValue }; }
        passed[ev.node + "_" + p.slot] = true;
      });
    }
    const cur = t > 0 ? data.events[t - 1] : null;
    Object.keys(values).forEach((i) => {
      const g = values[i], txt = g.querySelector("text.mgx-grad"), s = S[i];
      setClass(g, "mgx-current", cur && String(cur.node) === i);
      if (txt) {
        txt.textContent = s ? "grad " + s.text : "grad";
        setClass(txt, "mgx-hidden", !s);
        setClass(txt, "mgx-partial", s && !finished[i]);
      }
    });
    Object.keys(ops).forEach((i) => setClass(ops[i], "mgx-current", cur && String(cur.node) === i));
    Object.keys(outs).forEach((i) => setClass(outs[i], "mgx-hot", cur && String(cur.node) === i));
    Object.keys(edges).forEach((key) => {
      const g = edges[key], txt = g.querySelector("text.mgx-contrib");
      setClass(g, "mgx-hot", cur && key.split("_")[0] === String(cur.node));
      if (txt) {
        txt.textContent = "S·z = " + (contribOf[key] || "");
        setClass(txt, "mgx-hidden", !passed[key]);
      }
    });
    Object.keys(rows).forEach((i) => {
      const tr = rows[i], td = tr.querySelector("td.mgx-s"), s = S[i];
      td.textContent = s ? s.text + (finished[i] ? "" : " (so far)") : "";
      if (s && s.value !== null) { td.setAttribute("data-value", String(s.value)); } else { td.removeAttribute("data-value"); }
      setClass(td, "mgx-partial", s && !finished[i]);
      setClass(tr, "mgx-current", cur && String(cur.node) === i);
    });
    const chain = one(".mgx-chain");
    chain.textContent = "";
    const lines = cur ? cur.lines : ["Forward pass: every node holds its value. Press next (or →) to run the "
      + "backward pass one node at a time, starting from S(" + data.out + ") = 1."];
    lines.forEach((line) => { const d = document.createElement("div"); d.textContent = line; chain.appendChild(d); });
    one(".mgx-status").textContent = t === 0 ? "forward values (" + N + " backward steps)"
      : "step " + t + " of " + N + ": " + data.nodes[cur.node].name + (t === N ? " (done: every S is final)" : "");
    one(".mgx-status").setAttribute("data-step", String(t));
    one(".mgx-back").disabled = t === 0;
    one(".mgx-next").disabled = t === N;
  }

  function clearPaths() {
    all(".mgx-path").forEach((el) => el.classList.remove("mgx-path"));
    all(".mgx-paths li").forEach((li) => li.classList.remove("mgx-chosen"));
  }

  function highlight(list) {
    clearPaths();
    list.forEach((p) => {
      p.nodes.forEach((i) => { setClass(values[i], "mgx-path", true); setClass(ops[i], "mgx-path", true); });
      p.nodes.slice(1).forEach((i) => setClass(outs[i], "mgx-path", true));
      p.edges.forEach((e) => setClass(edges[e[0] + "_" + e[1]], "mgx-path", true));
    });
  }

  function showPaths(i) {
    const info = data.paths[i], box = one(".mgx-paths");
    box.textContent = "";
    const h = document.createElement("p");
    h.innerHTML = "";
    h.textContent = "Paths from " + data.nodes[i].name + " to " + data.out + " (" + info.count + "):";
    box.appendChild(h);
    if (info.note) {
      const p = document.createElement("p"); p.textContent = info.note; box.appendChild(p); clearPaths(); return;
    }
    const ol = document.createElement("ol");
    info.paths.forEach((p) => {
      const li = document.createElement("li");
      li.textContent = p.text;
      li.addEventListener("click", (e) => { e.stopPropagation(); highlight([p]); li.classList.add("mgx-chosen"); });
      ol.appendChild(li);
    });
    box.appendChild(ol);
    const sum = document.createElement("p");
    sum.className = "mgx-sum";
    sum.textContent = "Sum of the products = " + info.sum + " = S(" + data.nodes[i].name + ") = " + info.grad
      + ", the gradient backward computes.";
    box.appendChild(sum);
    const again = document.createElement("button");
    again.type = "button"; again.textContent = "all paths";
    again.addEventListener("click", () => highlight(info.paths));
    box.appendChild(again);
    highlight(info.paths);
  }

  Object.keys(data.paths).forEach((i) => {
    [values[i], rows[i] && rows[i].querySelector("td.mgx-name")].forEach((el) => {
      if (!el) { return; }
      (el.tagName === "TD" ? el.parentNode : el).setAttribute("data-leaf", "1");
      el.addEventListener("click", () => showPaths(i));
    });
  });
  one(".mgx-next").addEventListener("click", () => show(t + 1));
  one(".mgx-back").addEventListener("click", () => show(t - 1));

  function onKey(e) {
    const k = e.key;
    if (k === "ArrowRight" || k === "ArrowDown" || k === "PageDown") { show(t + 1); }
    else if (k === "ArrowLeft" || k === "ArrowUp" || k === "PageUp") { show(t - 1); }
    else if (k === "Home") { show(0); }
    else if (k === "End") { show(N); }
    else { return; }
    e.preventDefault();
    e.stopPropagation();
  }
  // Alone in a tab the page owns the arrow keys; inside a slide deck or notebook only while it has focus.
  const alone = data.keys === "page" || (data.keys === "auto" && root.parentNode === document.body
    && document.body.children.length <= 1);
  (alone ? document : root).addEventListener("keydown", onKey);
  show(0);
}
