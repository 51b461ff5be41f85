// /admin/digests: the cron builder (fills the cron field and shows the next five runs in
// the digest's time zone) and the live preview of the unsaved draft.
"use strict";
(function () {
  var form = document.getElementById("digest-form");
  if (!form) { return; }

  // ---- the cron builder ----------------------------------------------------------------
  var builder = document.getElementById("cron-builder");
  var frequency = document.getElementById("cron-frequency");
  var time = document.getElementById("cron-time");
  var timeLabel = document.getElementById("cron-time-label");
  var daysBox = document.getElementById("cron-days");
  var days = Array.prototype.slice.call(daysBox.querySelectorAll("input[type=checkbox]"));
  var schedule = document.getElementById("schedule");
  var timezone = document.getElementById("timezone");
  var runs = document.getElementById("next-runs");
  var described = document.getElementById("schedule-described");
  var problem = document.getElementById("schedule-error");

  function two(n) { return (n < 10 ? "0" : "") + n; }

  // The builder's reading of a cron expression; "custom" when it has no control for it.
  function parse(cron) {
    var f = cron.trim().split(/\s+/);
    var custom = { frequency: "custom" };
    if (f.length !== 5 || f[2] !== "*" || f[3] !== "*" || !/^\d{1,2}$/.test(f[0]) || +f[0] > 59) { return custom; }
    var minute = +f[0];
    if (f[1] === "*") { return f[4] === "*" ? { frequency: "hourly", hour: 0, minute: minute } : custom; }
    if (!/^\d{1,2}$/.test(f[1]) || +f[1] > 23) { return custom; }
    var at = { hour: +f[1], minute: minute };
    var dow = f[4].toLowerCase();
    if (dow === "*") { at.frequency = "daily"; return at; }
    if (dow === "1-5" || dow === "mon-fri") { at.frequency = "weekdays"; return at; }
    if (/^[0-7](,[0-7])*$/.test(dow)) {
      at.frequency = "weekly";
      at.days = dow.split(",").map(function (d) { return String(+d % 7); });
      return at;
    }
    return custom;
  }

  function chosenDays() {
    var chosen = days.filter(function (box) { return box.checked; }).map(function (box) { return +box.value; });
    chosen.sort(function (a, b) { return a - b; });
    return chosen.length ? chosen.join(",") : "1";
  }

  function build() {
    var parts = (time.value || "07:00").split(":");
    var hour = +parts[0], minute = +parts[1];
    switch (frequency.value) {
      case "daily": return minute + " " + hour + " * * *";
      case "weekdays": return minute + " " + hour + " * * 1-5";
      case "weekly": return minute + " " + hour + " * * " + chosenDays();
      case "hourly": return minute + " * * * *";
      default: return schedule.value;
    }
  }

  function showControls() {
    daysBox.hidden = frequency.value !== "weekly";
    time.disabled = frequency.value === "custom";
    timeLabel.textContent = frequency.value === "hourly" ? "Minute past the hour (from the time)" : "Time of day";
  }

  function fromSchedule() {
    var read = parse(schedule.value);
    frequency.value = read.frequency;
    if (read.frequency !== "custom") {
      time.value = two(read.hour) + ":" + two(read.minute);
      if (read.days) {
        days.forEach(function (box) { box.checked = read.days.indexOf(box.value) >= 0; });
      }
    }
    showControls();
  }

  function fromControls() {
    showControls();
    schedule.value = build();
    refreshRuns();
  }

  var asked = 0;
  var runsTimer = null;
  function refreshRuns() {
    window.clearTimeout(runsTimer);
    runsTimer = window.setTimeout(askRuns, 250);
  }

  function askRuns() {
    var cron = schedule.value.trim();
    var zone = timezone.value.trim() || "UTC";
    var ticket = ++asked;
    if (!cron) { showRuns({ described: "", labels: [] }); return; }
    // Half-typed values are answered here, without asking the server.
    if (cron.split(/\s+/).length !== 5) { showProblem("A cron expression has five fields."); return; }
    if (zone !== "UTC" && !knownZone(zone)) { showProblem("Unknown time zone: choose one from the list."); return; }
    var query = "?schedule=" + encodeURIComponent(cron) + "&timezone=" + encodeURIComponent(zone);
    window.mailer.api("GET", "/digests/schedule" + query).then(function (answer) {
      if (ticket === asked) { showRuns(answer); }
    }, function (error) {
      if (ticket === asked) { showProblem(error.message); }
    });
  }

  function knownZone(name) {
    return Array.prototype.some.call(document.getElementById("zones").options, function (option) {
      return option.value === name;
    });
  }

  function showRuns(answer) {
    problem.hidden = true;
    described.textContent = answer.described === "custom" ? "a custom schedule" : answer.described;
    runs.textContent = "";
    answer.labels.forEach(function (label) {
      var item = document.createElement("li");
      item.textContent = label;
      runs.appendChild(item);
    });
  }

  function showProblem(message) {
    runs.textContent = "";
    described.textContent = "";
    problem.textContent = message;
    problem.hidden = false;
  }

  builder.hidden = false;
  fromSchedule();
  frequency.addEventListener("change", fromControls);
  time.addEventListener("input", fromControls);
  days.forEach(function (box) { box.addEventListener("change", fromControls); });
  schedule.addEventListener("input", function () { fromSchedule(); refreshRuns(); });
  timezone.addEventListener("change", refreshRuns);
  timezone.addEventListener("input", refreshRuns);

  // ---- the live preview of the draft ----------------------------------------------------
  var previewButton = document.getElementById("preview-button");
  var holder = document.querySelector("[data-preview-url]");
  if (!previewButton || !holder) { return; }
  var subject = document.getElementById("preview-subject");
  var text = document.getElementById("preview-text");
  var status = document.getElementById("preview-status");
  var previewTimer = null;
  var previewed = 0;

  function preview() {
    var ticket = ++previewed;
    form.requestSubmit(previewButton);  // the HTML, into the sandboxed frame
    fetch(holder.getAttribute("data-preview-url"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": window.mailer.csrf() },
      body: new FormData(form)
    }).then(function (response) { return response.json(); }).then(function (answer) {
      if (ticket !== previewed) { return; }
      subject.textContent = answer.subject;
      text.textContent = answer.error || answer.text;
      status.textContent = answer.error ? "The draft cannot be shown: " + answer.error : "Showing the unsaved draft.";
    });
  }

  ["name", "topics", "max_articles", "subject_template", "html_template", "text_template"].forEach(function (id) {
    var field = document.getElementById(id);
    if (field) {
      field.addEventListener("input", function () {
        window.clearTimeout(previewTimer);
        previewTimer = window.setTimeout(preview, 500);
      });
    }
  });
  previewButton.addEventListener("click", function (event) {
    event.preventDefault();
    preview();
  });
}());
