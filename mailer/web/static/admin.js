// Shared by every page of /admin/: calls to the editors' API as the signed-in editor.
"use strict";
window.mailer = {
  csrf: function () {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  },
  // fetch() against /api/v1 with the session cookie; writes carry the CSRF header.
  api: function (method, path, body) {
    var options = { method: method, credentials: "same-origin", headers: {} };
    if (method !== "GET") { options.headers["X-CSRF-Token"] = window.mailer.csrf(); }
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch("/api/v1" + path, options).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) { throw new Error(data.detail || data.message || response.statusText); }
        return data;
      });
    });
  }
};
// A button with data-confirm asks before its form is submitted.
document.addEventListener("submit", function (event) {
  var button = event.submitter;
  var question = (button && button.getAttribute("data-confirm")) || event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) { event.preventDefault(); }
});
