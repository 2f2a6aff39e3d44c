// Signoff's web inbox, enhanced: live refresh, SLA countdown, keyboard. The pages work
// without this file.
(function () {
  "use strict";
  var body = document.body;

  // -- the SLA countdown -----------------------------------------------------------
  function countdown(due) {
    var seconds = Math.round((due - Date.now()) / 1000);
    var left = Math.abs(seconds);
    var days = Math.floor(left / 86400), hours = Math.floor(left % 86400 / 3600);
    var minutes = Math.floor(left % 3600 / 60);
    var text = days ? days + "d " + hours + "h" : hours ? hours + "h " + minutes + "m" : Math.max(1, minutes) + "m";
    return seconds > 0 ? "due in " + text : "overdue by " + text;
  }
  function tick() {
    document.querySelectorAll("time[data-due]").forEach(function (el) {
      var due = Date.parse(el.getAttribute("datetime"));
      if (!isNaN(due)) { el.textContent = countdown(due); }
    });
  }
  setInterval(tick, 30000);

  // -- live refresh: the page asks every few seconds whether what it shows changed ----
  var live = body.getAttribute("data-live");
  if (live) {
    var version = body.getAttribute("data-version");
    var poll = function () {
      if (document.hidden) { return; }
      fetch(live, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (!data || data.version === version) { return; }
          if (body.getAttribute("data-refresh") === "reload") {
            window.location.reload();
          } else {
            var note = document.getElementById("changed");
            if (note) { note.hidden = false; }
            var form = document.getElementById("decide");
            var typed = form && form.querySelector("textarea") && form.querySelector("textarea").value;
            if (!typed) { window.location.reload(); }
          }
        })
        .catch(function () {});
    };
    setInterval(poll, 2000);
  }

  // -- keyboard --------------------------------------------------------------------
  var items = Array.prototype.slice.call(document.querySelectorAll("[data-item]"));
  var selected = -1;
  function select(index) {
    if (!items.length) { return; }
    selected = Math.max(0, Math.min(items.length - 1, index));
    items.forEach(function (el, i) { el.classList.toggle("selected", i === selected); });
    items[selected].scrollIntoView({ block: "nearest" });
  }
  function pick(key) {
    var button = document.querySelector('#decide button[data-key="' + key + '"]');
    if (!button || button.disabled) { return; }
    document.querySelectorAll("#decide button").forEach(function (b) { b.classList.remove("picked"); });
    button.classList.add("picked");
    var form = document.getElementById("decide");
    form.setAttribute("data-picked", button.value);
    var code = document.getElementById("reason_code");
    if (code) { code.focus(); }
  }
  // Enter in the reason code select or a picked form submits with the picked action
  var decide = document.getElementById("decide");
  if (decide) {
    decide.addEventListener("keydown", function (event) {
      var picked = decide.getAttribute("data-picked");
      if (event.key === "Enter" && picked && event.target.tagName === "SELECT") {
        event.preventDefault();
        var button = decide.querySelector('button[value="' + picked + '"]');
        if (button) { button.click(); }
      }
    });
  }
  var pending = "";
  document.addEventListener("keydown", function (event) {
    var tag = event.target.tagName;
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || event.target.isContentEditable) { return; }
    var key = event.key;
    var root = body.getAttribute("data-root");
    if (pending === "g") {
      pending = "";
      var go = { q: "/", b: "/board", h: "/history", r: "/report" }[key];
      if (go) { window.location.href = root + go; }
      return;
    }
    if (key === "g") { pending = "g"; return; }
    if (key === "?") {
      var help = document.getElementById("help");
      help.hidden = !help.hidden;
      return;
    }
    if (key === "Escape") { document.getElementById("help").hidden = true; return; }
    if (key === "j") { select(selected + 1); return; }
    if (key === "k") { select(selected - 1); return; }
    if ((key === "o" || key === "Enter") && selected >= 0) {
      var link = items[selected].querySelector("a") || items[selected];
      if (link.href) { window.location.href = link.href; }
      return;
    }
    if (key === "a" || key === "r" || key === "i") { pick(key); }
    if (key === "e") {
      pick(key);
      var first = document.querySelector("#decide [data-arg]");
      if (first && !first.disabled) { first.focus(); }
    }
  });
})();
