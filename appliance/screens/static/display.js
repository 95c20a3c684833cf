"use strict";
// Traveller display: applies the live state to the page. textContent/setAttribute only.
(function () {
  const catalogs = JSON.parse(document.getElementById("catalogs").textContent);
  const root = document.documentElement;
  const defaultLang = root.dataset.defaultLang;
  const $ = (id) => document.getElementById(id);
  const SYMBOLS = {
    scan_pass: "▤", look_at_camera: "◉", come_closer: "⇧", look_straight: "◎",
    step_to_centre: "⇔", one_at_a_time: "①", hold_still: "■", proceed: "✔",
    see_agent: "ℹ", manual_check: "ℹ", lane_closed: "✖",
  };
  const MOODS = { proceed: "go", see_agent: "stop", manual_check: "stop", lane_closed: "stop" };
  const S = 1000;
  let lang = root.lang;
  let state = null;
  let wasIdle = true;

  function say(key, seat) {
    const text = (catalogs[lang] || catalogs[defaultLang])[key] || "";
    return text.replace("{seat}", seat || "");
  }

  function render() {
    document.querySelectorAll("[data-t]").forEach((el) => { el.textContent = say(el.dataset.t); });
    document.querySelectorAll(".langs a").forEach((a) => {
      if (a.dataset.lang === lang) a.setAttribute("aria-current", "true");
      else a.removeAttribute("aria-current");
    });
    $("privacy-link").setAttribute("href", "/privacy?lang=" + lang);
    if (!state) return;
    const key = state.instruction;
    const text = $("instruction-text");
    text.dataset.key = key;
    text.textContent = say(key);
    $("symbol").textContent = SYMBOLS[key] || "";
    document.body.dataset.mood = MOODS[key] || "info";
    const seat = $("seat");
    seat.hidden = !state.seat;
    seat.textContent = state.seat ? say("seat", state.seat) : "";
    $("cue").hidden = !state.cue;
    const height = Math.round(S * (state.aspect || 1));
    $("outline").setAttribute("viewBox", "0 0 " + S + " " + height);
    const target = $("target");
    target.setAttribute("cx", state.target.cx * S); target.setAttribute("cy", state.target.cy * height);
    target.setAttribute("rx", state.target.rx * S); target.setAttribute("ry", state.target.ry * height);
    const face = $("face");
    const f = state.face;
    face.setAttribute("visibility", f ? "visible" : "hidden");
    [0, 1].forEach((i) => $("eye-" + i).setAttribute("visibility", f ? "visible" : "hidden"));
    if (f) {
      face.setAttribute("x", f.x * S); face.setAttribute("y", f.y * height);
      face.setAttribute("width", f.w * S); face.setAttribute("height", f.h * height);
      f.eyes.forEach((p, i) => {
        $("eye-" + i).setAttribute("cx", p[0] * S); $("eye-" + i).setAttribute("cy", p[1] * height);
      });
    }
  }

  document.querySelectorAll(".langs a").forEach((a) => a.addEventListener("click", (ev) => {
    ev.preventDefault();
    lang = a.dataset.lang;
    root.lang = lang;
    render();
  }));

  const source = new EventSource("/events/display");
  source.addEventListener("open", () => { $("reconnecting").hidden = true; });
  source.addEventListener("error", () => { $("reconnecting").hidden = false; });
  source.addEventListener("state", (ev) => {
    state = JSON.parse(ev.data);
    if (state.idle && !wasIdle && lang !== defaultLang) {  // the next traveller: default language
      lang = defaultLang;
      root.lang = lang;
    }
    wasIdle = state.idle;
    $("reconnecting").hidden = true;
    render();
  });
})();
