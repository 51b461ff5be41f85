"""Editors' HTML made safe to show on mailer's own origin (the public archive): cleaned by
nh3 (the ammonia sanitizer) against an allow-list fit for newsletters: text, tables,
images, links (given rel="noopener noreferrer") and inline styles limited to layout,
colour and type. Nothing that runs, loads a document, submits, redirects or changes
where relative links point survives: no script, event handler, javascript: URL, form,
frame, object, base, meta or svg.
"""

from __future__ import annotations

import nh3

TAGS = (set(nh3.ALLOWED_TAGS) - {"area", "map"}) | {"font", "tfoot"}
CONTENT_DROPPED = {
    "script",
    "style",
    "title",
    "noscript",
    "template",
    "iframe",
    "frame",
    "frameset",
    "object",
    "embed",
    "applet",
    "svg",
    "math",
    "textarea",
    "select",
    "xmp",
    "noembed",
    "noframes",
    "plaintext",
}
"""Elements removed with everything inside them (the rest of what is not allowed loses
its tags and keeps its text)."""
EVERYWHERE = {"style", "title", "align", "valign", "width", "height", "bgcolor", "dir", "lang"}
ATTRIBUTES: dict[str, set[str]] = {
    **{tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items() if tag in TAGS},
    "*": EVERYWHERE,
    "table": {"border", "cellpadding", "cellspacing", "summary", "role"},
    "td": {"colspan", "rowspan", "headers", "nowrap"},
    "th": {"colspan", "rowspan", "headers", "scope", "nowrap"},
    "img": {"src", "alt", "border"},
    "a": {"href", "hreflang"},
    "font": {"color", "face", "size"},
}
URL_SCHEMES = {"http", "https", "mailto"}
STYLE_PROPERTIES = {
    "color",
    "background-color",
    "font",
    "font-family",
    "font-size",
    "font-style",
    "font-weight",
    "font-variant",
    "line-height",
    "letter-spacing",
    "word-spacing",
    "text-align",
    "text-decoration",
    "text-transform",
    "text-indent",
    "vertical-align",
    "white-space",
    "word-break",
    "overflow-wrap",
    "direction",
    "display",
    "width",
    "height",
    "max-width",
    "min-width",
    "max-height",
    "min-height",
    "margin",
    "margin-top",
    "margin-right",
    "margin-bottom",
    "margin-left",
    "padding",
    "padding-top",
    "padding-right",
    "padding-bottom",
    "padding-left",
    "border",
    "border-top",
    "border-right",
    "border-bottom",
    "border-left",
    "border-color",
    "border-style",
    "border-width",
    "border-radius",
    "border-collapse",
    "border-spacing",
    "list-style-type",
    "table-layout",
}
"""Layout, colour and type; none of them takes a URL (no background, list-style-image,
border-image, content or cursor), none moves an element over the page (no position)."""
STYLE_REFUSED = ("url(", "image(", "image-set(", "expression", "javascript:", "\\", "/*", "@", "<")
"""In a style value that keeps the properties above, these can still load or run
something (in some browser) or hide it from a reader's eye: a style with one is dropped."""


def _attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    if attribute == "style":
        squeezed = "".join(value.split()).lower()
        if any(part in squeezed for part in STYLE_REFUSED):
            return None
    return value


def clean(html: str) -> str:
    """The HTML (a whole document or a fragment) as a fragment with only what the
    allow-list keeps."""
    return nh3.clean(
        html,
        tags=TAGS,
        clean_content_tags=CONTENT_DROPPED,
        attributes=ATTRIBUTES,
        attribute_filter=_attribute_filter,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer",
        strip_comments=True,
        filter_style_properties=STYLE_PROPERTIES,
    )
