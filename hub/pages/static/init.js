// GOV.UK Frontend's start-up classes, as its page template sets them inline (a file here: the pages allow no
// inline script).
document.body.className += " js-enabled" + ("noModule" in HTMLScriptElement.prototype ? " govuk-frontend-supported" : "");
