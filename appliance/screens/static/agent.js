"use strict";
// Agent station: applies the live state. textContent/setAttribute only.
(function () {
  const t = JSON.parse(document.getElementById("catalog").textContent);
  const $ = (id) => document.getElementById(id);
  const word = (prefix, key) => (key ? t[prefix + key] || key : "–");

  function render(s) {
    $("phase").textContent = word("phase_", s.phase);
    $("step").textContent = word("step_", s.step);
    $("referral").textContent = word("referral_", s.referral);
    const who = s.traveller;
    $("nobody").hidden = !!who;
    $("traveller").hidden = !who;
    if (who) {
      $("name").textContent = who.name || "–";
      $("seat").textContent = who.seat || "–";
      $("pass").textContent = word("pass_", who.pass_check);
    }
    Object.keys(s.counters).forEach((k) => { $("count-" + k).textContent = String(s.counters[k]); });
    const list = $("alerts");
    while (list.firstChild) list.removeChild(list.firstChild);
    s.alerts.forEach((key) => {
      const item = document.createElement("li");
      item.dataset.alert = key;
      item.textContent = "⚠ " + word("alert_", key);
      list.appendChild(item);
    });
    $("no-alerts").hidden = s.alerts.length > 0;
    $("release").disabled = !s.actions.includes("release");
    $("cancel").disabled = !s.actions.includes("cancel");
    const last = s.last_action;
    $("last-action").textContent = last
      ? last.agent + ": " + word("", last.action) + " (" + word("reason_", last.reason) + ")"
      : "–";
  }

  const source = new EventSource("/agent/events");
  source.addEventListener("open", () => { $("reconnecting").hidden = true; });
  source.addEventListener("error", () => { $("reconnecting").hidden = false; });
  source.addEventListener("state", (ev) => {
    $("reconnecting").hidden = true;
    render(JSON.parse(ev.data));
  });
})();
