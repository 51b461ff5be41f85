// /admin/forms/{slug}: copy an embed snippet, and redraw the preview as the editor types.
"use strict";
(function () {
  var status = document.getElementById("copy-status");

  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-copy"));
      source.focus();
      source.select();
      var manual = function () { status.textContent = "Selected: press Ctrl+C (or ⌘C) to copy."; };
      if (!navigator.clipboard || !window.isSecureContext) { manual(); return; }
      navigator.clipboard.writeText(source.value).then(function () {
        status.textContent = "Copied to the clipboard.";
      }, manual);
    });
  });

  var preview = document.getElementById("preview");
  var editor = document.getElementById("form-editor");
  if (!preview || !editor) { return; }
  var timer = null;

  function redraw() {
    var params = new URLSearchParams();
    params.set("draft", "1");
    params.set("heading", editor.elements.heading.value);
    params.set("consent_text", editor.elements.consent_text.value);
    params.set("consent_checkbox", editor.elements.consent_checkbox.checked ? "1" : "");
    editor.querySelectorAll("input[name=lists]:checked").forEach(function (box) {
      params.append("lists", box.value);
    });
    preview.src = preview.getAttribute("data-preview") + "?" + params.toString();
  }

  ["heading", "consent_text", "consent_checkbox", "lists"].forEach(function (name) {
    var fields = editor.querySelectorAll("[name=" + name + "]");
    fields.forEach(function (field) {
      field.addEventListener(field.type === "checkbox" ? "change" : "input", function () {
        window.clearTimeout(timer);
        timer = window.setTimeout(redraw, 250);
      });
    });
  });
})();
