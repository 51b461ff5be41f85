// The confirm page confirms on its own when scripts run; without them, the button does.
"use strict";
document.getElementById("confirm-form").submit();
