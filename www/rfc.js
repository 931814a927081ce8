// Links for RFC references such as "RFC 9111 §5.2.2.7; RFC 5861 §4".

/** A URL for one reference, e.g. "RFC 9111 §5.2.2.7" -> rfc-editor.org with the anchor. */
export function rfcUrl(ref) {
  const m = /RFC\s*(\d+)(?:\s*§\s*([\d.]+))?/.exec(ref);
  if (!m) return null;
  return `https://www.rfc-editor.org/rfc/rfc${m[1]}.html${m[2] ? '#section-' + m[2] : ''}`;
}

/** A DocumentFragment of links for a reference string with several parts. */
export function rfcLinks(refs) {
  const frag = document.createDocumentFragment();
  let current = '';
  for (const part of String(refs || '').split(/[;,]\s*/)) {
    // "§5.2.1.1" after "RFC 9111 §…" inherits the RFC number.
    const full = /RFC/.test(part) ? part : current.replace(/§.*$/, '') + part.trim();
    current = full;
    const url = rfcUrl(full);
    const a = document.createElement(url ? 'a' : 'span');
    a.className = 'rfc';
    a.textContent = full.trim();
    if (url) {
      a.href = url;
      a.target = '_blank';
      a.rel = 'noopener';
    }
    frag.append(a);
  }
  return frag;
}
