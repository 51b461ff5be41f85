/* mailer signup form: renders into the page that includes this script. No cookies. */
(function () {
  "use strict";
  var config = {{ form_json | safe }};
  var subscribeUrl = {{ subscribe_url | safe }};
  var script = document.currentScript;
  var texts = {
    email: {{ _("Email address") | tojson }},
    newsletters: {{ _("Newsletters") | tojson }},
    signUp: {{ _("Sign up") | tojson }},
    invalidEmail: {{ _("Please enter a valid email address.") | tojson }},
    tickConsent: {{ _("Please tick the box to agree to the terms.") | tojson }},
    sending: {{ _("Sending…") | tojson }},
    thanks: {{ _("Thanks! Please check your inbox and confirm your subscription.") | tojson }},
    failed: {{ _("Sorry, that did not work. Please try again.") | tojson }},
    unreachable: {{ _("Sorry, we could not reach the server. Please try again.") | tojson }}
  };

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text) { node.textContent = text; }
    return node;
  }

  function render(host) {
    var uid = "mailer-" + config.slug + "-" + Math.random().toString(36).slice(2, 8);
    var form = el("form", { "class": "mailer-form", "novalidate": "" });
    form.appendChild(el("p", { "class": "mailer-heading" }, config.heading));
    form.appendChild(el("label", { "for": uid + "-email" }, texts.email));
    var email = el("input", { type: "email", id: uid + "-email", name: "email", required: "",
                              autocomplete: "email" });
    form.appendChild(email);
    var listBoxes = [];
    if (config.lists.length > 1) {
      var fieldset = el("fieldset");
      fieldset.appendChild(el("legend", {}, texts.newsletters));
      config.lists.forEach(function (list) {
        var label = el("label");
        var box = el("input", { type: "checkbox", value: list.slug });
        box.checked = true;
        listBoxes.push(box);
        label.appendChild(box);
        label.appendChild(document.createTextNode(" " + list.name));
        fieldset.appendChild(label);
      });
      form.appendChild(fieldset);
    }
    var trap = el("input", { type: "text", name: "website", tabindex: "-1", autocomplete: "off",
                             "aria-hidden": "true" });
    // Through the CSSOM, which a host page's strict style-src allows (a style attribute it
    // would block).
    trap.style.position = "absolute";
    trap.style.left = "-10000px";
    trap.style.width = "1px";
    trap.style.height = "1px";
    form.appendChild(trap);
    var consentBox = null;
    if (config.consent_checkbox) {
      var consentLabel = el("label", { "class": "mailer-consent" });
      consentBox = el("input", { type: "checkbox", name: "consent", required: "" });
      consentLabel.appendChild(consentBox);
      consentLabel.appendChild(document.createTextNode(" " + config.consent_text));
      form.appendChild(consentLabel);
    } else {
      form.appendChild(el("p", { "class": "mailer-consent" }, config.consent_text));
    }
    var button = el("button", { type: "submit" }, texts.signUp);
    form.appendChild(button);
    var result = el("p", { "class": "mailer-result", role: "status", "aria-live": "polite" });
    form.appendChild(result);

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (!email.value || !email.checkValidity()) {
        result.textContent = texts.invalidEmail;
        email.focus();
        return;
      }
      if (consentBox && !consentBox.checked) {
        result.textContent = texts.tickConsent;
        consentBox.focus();
        return;
      }
      button.disabled = true;
      result.textContent = texts.sending;
      var body = {
        email: email.value,
        form: config.slug,
        website: trap.value,
        source_url: window.location.href,
        consent: consentBox ? consentBox.checked : false
      };
      if (listBoxes.length) {
        body.lists = listBoxes.filter(function (b) { return b.checked; })
                              .map(function (b) { return b.value; });
      }
      fetch(subscribeUrl, {
        method: "POST",
        mode: "cors",
        credentials: "omit",
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        body: JSON.stringify(body)
      }).then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (data) {
          if (response.ok) {
            form.classList.add("mailer-done");
            result.textContent = texts.thanks;
            email.value = "";
          } else {
            result.textContent = data.detail || texts.failed;
          }
        });
      }).catch(function () {
        result.textContent = texts.unreachable;
      }).then(function () { button.disabled = false; });
    });
    host.appendChild(form);
  }

  var targets = document.querySelectorAll('[data-mailer-form="' + config.slug + '"]');
  if (targets.length) {
    Array.prototype.forEach.call(targets, render);
  } else if (script && script.parentNode) {
    var host = el("div", { "data-mailer-form": config.slug });
    script.parentNode.insertBefore(host, script.nextSibling);
    render(host);
  }
})();
