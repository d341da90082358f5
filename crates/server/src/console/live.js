// Live updates: follow the event stream from the seq this page was rendered at,
// and on events re-fetch the page and swap its <main> (at most one fetch at a
// time, a quarter second after the first event), keeping what the operator is
// typing. Without JavaScript the page is the same, only not live.
(() => {
  const body = document.body;
  const events = body.dataset.events;
  const live = document.getElementById('live');
  if (!events || !window.EventSource || !window.fetch) return;
  let timer = null, busy = false, again = false;
  const swap = (doc) => {
    const fresh = doc.querySelector('main');
    const main = document.querySelector('main');
    if (!fresh || !main) return;
    for (const el of main.querySelectorAll('textarea[id], input[id]')) {
      const f = fresh.querySelector('#' + CSS.escape(el.id));
      if (f && el.value !== el.defaultValue) f.value = el.value;
    }
    for (const el of main.querySelectorAll('details[id]')) {
      const f = fresh.querySelector('#' + CSS.escape(el.id));
      if (f) f.open = el.open;
    }
    const focused = document.activeElement && document.activeElement.id;
    main.replaceWith(fresh);
    if (focused) { const el = document.getElementById(focused); if (el) el.focus(); }
    const nav = doc.getElementById('nav'), mine = document.getElementById('nav');
    if (nav && mine) mine.replaceWith(nav);
    document.title = doc.title;
  };
  const refresh = async () => {
    timer = null;
    if (busy) { again = true; return; }
    busy = true;
    try {
      const res = await fetch(location.href, { credentials: 'same-origin' });
      // Sent to the login page (the session ended): go there.
      if (res.redirected) { location.assign(res.url); return; }
      if (res.ok) swap(new DOMParser().parseFromString(await res.text(), 'text/html'));
    } catch (e) {
      // The next event tries again.
    } finally {
      busy = false;
      if (again) { again = false; schedule(); }
    }
  };
  const schedule = () => { if (!timer) timer = setTimeout(refresh, 250); };
  const url = events + (events.includes('?') ? '&' : '?') + 'from=' + encodeURIComponent(body.dataset.seq || '0');
  const source = new EventSource(url);
  const state = (s, text) => { if (live) { live.dataset.state = s; live.textContent = text; } };
  source.onopen = () => state('open', '● live');
  source.onerror = () => state('closed', '○ reconnecting');
  for (const kind of KINDS) source.addEventListener(kind, schedule);
})();
