// Automation server dashboard: follows a running run's log. Everything else
// works without JavaScript (a <noscript> refresh stands in for this file).
(function () {
  "use strict";
  var log = document.querySelector("[data-follow-log]");
  if (!log) { return; }
  var url = log.getAttribute("data-follow-log");
  var badge = document.querySelector("#run-status .badge");
  var note = document.getElementById("follow-note");
  var POLL_MS = 1000;

  function atBottom() {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 24;
  }

  function show(status) {
    if (!badge || !status) { return; }
    badge.textContent = status.replace("_", " ");
    badge.className = "badge status-" + status;
    if (note) { note.textContent = "following while the run is " + status + "…"; }
  }

  function tick() {
    fetch(url, { credentials: "same-origin", cache: "no-store" }).then(function (response) {
      var type = response.headers.get("Content-Type") || "";
      if (!response.ok || type.indexOf("text/plain") !== 0) {
        if (note) { note.textContent = "stopped following (" + response.status + "): reload the page"; }
        return null;
      }
      return response.text().then(function (text) {
        var stick = atBottom();
        if (log.textContent !== text) {
          log.textContent = text;
          if (stick) { log.scrollTop = log.scrollHeight; }
        }
        show(response.headers.get("X-Run-Status"));
        if (response.headers.get("X-Run-Finished") === "true") {
          // The finished run has metrics, outputs and times to show: render it anew.
          window.location.reload();
          return null;
        }
        window.setTimeout(tick, POLL_MS);
        return null;
      });
    }).catch(function () {
      window.setTimeout(tick, POLL_MS * 3);
    });
  }

  log.scrollTop = log.scrollHeight;
  window.setTimeout(tick, POLL_MS);
})();
