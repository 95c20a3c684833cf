"use strict";
// Several gates at once: each card follows one unit's summary stream (no traveller data).
(function () {
  const t = JSON.parse(document.getElementById("catalog").textContent);
  const urls = JSON.parse(document.getElementById("unit-urls").textContent);
  const word = (prefix, key) => (key ? t[prefix + key] || key : "–");
  const list = document.getElementById("units");

  function line(card, label, cls) {
    const p = document.createElement("p");
    p.className = cls;
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = label + ": ";
    const value = document.createElement("span");
    value.className = "value";
    p.appendChild(name);
    p.appendChild(value);
    card.appendChild(p);
    return value;
  }

  function follow(url) {
    const card = document.createElement("li");
    card.className = "unit";
    card.dataset.url = url || "self";
    const title = document.createElement("h2");
    title.textContent = url || location.origin;
    card.appendChild(title);
    const fields = {
      phase: line(card, t.lane, "phase"),
      step: line(card, t.step, "step"),
      referral: line(card, t.reason, "referral"),
      counters: line(card, t.counters, "counters"),
      alerts: line(card, t.alerts, "alerts"),
    };
    list.appendChild(card);
    function connect() {
      const source = new EventSource(url + "/events/summary");
      source.addEventListener("state", (ev) => {
        const s = JSON.parse(ev.data);
        card.dataset.state = "live";
        title.textContent = t.gate + " " + s.gate + " · " + s.flight + " · " + s.device;
        fields.phase.textContent = word("phase_", s.phase);
        fields.step.textContent = word("step_", s.step);
        fields.referral.textContent = word("referral_", s.referral);
        fields.counters.textContent = ["boarded", "referred", "opt_outs", "manual_checks"]
          .map((k) => t["count_" + k] + " " + s.counters[k]).join(" · ");
        fields.alerts.textContent = s.alerts.length
          ? s.alerts.map((k) => "⚠ " + word("alert_", k)).join(", ") : t.no_alerts;
      });
      source.addEventListener("error", () => {
        if (source.readyState === EventSource.CLOSED) {  // refused (e.g. not allowed): retry later
          card.dataset.state = "unreachable";
          fields.phase.textContent = t.unreachable;
          setTimeout(connect, 5000);
        } else if (card.dataset.state !== "live") {
          card.dataset.state = "unreachable";
          fields.phase.textContent = t.unreachable;
        }
      });
    }
    connect();
  }
  urls.forEach(follow);
})();
