// The signup form page: tell the server which article page the reader came from.
"use strict";
document.getElementById("source_url").value = document.referrer || "";
