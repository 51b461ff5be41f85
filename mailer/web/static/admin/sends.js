// /admin/sends/{id}: the send's progress, read from the editors' API every second until
// the send ends. The rate is measured over the last interval (the API's average at first).
"use strict";
(function () {
  var root = document.getElementById("send-progress");
  if (!root) { return; }
  var sendId = root.getAttribute("data-send-id");
  var ended = ["done", "cancelled", "skipped"];
  var last = null;  // {at: ms, handled: n} of the previous answer

  function set(id, value) { document.getElementById(id).textContent = value; }

  function etaText(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) { return "—"; }
    if (seconds === 0) { return "done"; }
    if (seconds < 1) { return "under a second"; }
    if (seconds < 90) { return "about " + Math.round(seconds) + " s"; }
    if (seconds < 5400) { return "about " + Math.round(seconds / 60) + " min"; }
    return "about " + (seconds / 3600).toFixed(1) + " h";
  }

  function rateText(rate) {
    return rate.toFixed(rate < 1 ? 2 : rate < 10 ? 1 : 0) + " msg/s";
  }

  function show(send) {
    var handled = send.total - send.pending;
    var now = Date.now();
    var rate = send.rate;
    if (last !== null && now > last.at && send.status === "sending") {
      rate = (handled - last.handled) / ((now - last.at) / 1000);
    }
    last = { at: now, handled: handled };
    var badge = document.getElementById("send-status");
    badge.textContent = send.status;
    badge.className = "badge " + send.status;
    set("send-handled", handled);
    set("send-total", send.total);
    set("send-sent", send.sent);
    set("send-failed", send.failed);
    set("send-pending", send.pending);
    set("send-dropped", send.dropped);
    var bar = document.getElementById("send-bar");
    bar.max = Math.max(send.total, 1);
    bar.value = send.total ? handled : (ended.indexOf(send.status) >= 0 ? 1 : 0);
    set("send-rate", rate === null || rate === undefined ? "—" : rateText(rate));
    var eta = send.pending === 0 ? 0 : (rate ? send.pending / rate : null);
    set("send-eta", etaText(eta));
    if (send.finished_at) { set("send-finished", send.finished_at.replace("T", " ").slice(0, 19) + " UTC"); }
    Array.prototype.forEach.call(document.querySelectorAll("#send-actions form"), function (form) {
      form.hidden = form.getAttribute("data-when").split(" ").indexOf(send.status) < 0;
    });
    root.setAttribute("data-status", send.status);
    var none = document.getElementById("no-failures");
    if (none && ended.indexOf(send.status) >= 0) {
      none.textContent = send.failed ? "Reload the page to see the failed messages." : "None.";
    }
  }

  function poll() {
    window.mailer.api("GET", "/sends/" + sendId).then(function (send) {
      show(send);
      if (ended.indexOf(send.status) < 0) { window.setTimeout(poll, 1000); }
    }, function () {
      window.setTimeout(poll, 5000);  // the server restarting: try again a little later
    });
  }

  if (ended.indexOf(root.getAttribute("data-status")) < 0) { window.setTimeout(poll, 1000); }
}());
