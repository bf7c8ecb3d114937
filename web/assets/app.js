// mms fleet page. Plain JavaScript, no framework, no build step.
//
// The server computes every value (package fleet: flags, messages, ages,
// rollout waves and decisions, event lines); this script only lays them
// out, filters and sorts them, and follows the server's live streams. It
// writes text with textContent only: the Content Security Policy forbids
// writing strings as HTML (Trusted Types).
'use strict';

(() => {
  // ---- small DOM helpers ------------------------------------------------

  // h makes an element: attrs may hold class, text, title, href, data-*,
  // aria-*, on<event> handlers and plain properties; children are nodes,
  // strings (as text), arrays or null.
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k.startsWith('data-') || k.startsWith('aria-') || k === 'role' || k === 'title' || k === 'href' || k === 'for' || k === 'list') el.setAttribute(k, v);
      else el[k] = v;
    }
    append(el, children);
    return el;
  }
  function append(el, children) {
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      if (Array.isArray(c)) append(el, c);
      else if (c instanceof Node) el.appendChild(c);
      else el.appendChild(document.createTextNode(String(c)));
    }
  }
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }
  function replace(el, ...children) { clear(el); append(el, children); }
  const $ = (sel) => document.querySelector(sel);

  // ---- words and colours --------------------------------------------------

  // The order in which `mms status` lists flags (package fleet).
  const FLAG_ORDER = ['forged', 'invalid', 'rejected', 'failed', 'expired', 'behind', 'error', 'stale', 'stopped', 'nats'];
  const TONE = {
    // node flags
    invalid: 'bad', rejected: 'bad', failed: 'bad', error: 'bad', forged: 'bad',
    expired: 'warn', behind: 'warn', stale: 'warn', stopped: 'mute', nats: 'nats',
    // entry outcomes
    installed: 'ok', updated: 'ok', unchanged: 'ok', skipped: 'mute', purged: 'mute',
    rolled_back: 'bad', downloading: 'info', held: 'warn',
    // health and rollout states
    healthy: 'ok', pending: 'info', unhealthy: 'bad', old: 'mute',
    // yes/no and a halted rollout
    yes: 'ok', halted: 'bad',
  };
  function tone(word) { return TONE[word] || 'mute'; }
  function badge(word, title) {
    return h('span', { class: 'badge b-' + tone(word), title: title || null, text: word });
  }
  function flagRank(name) {
    const i = FLAG_ORDER.indexOf(name);
    return i < 0 ? FLAG_ORDER.length : i;
  }
  function enc(s) { return encodeURIComponent(s); }
  function nodeHref(id) { return '/nodes/' + enc(id); }
  function short(s) { return s && s.length > 12 ? s.slice(0, 12) : (s || ''); }
  function plural(n, word) { return n + ' ' + word + (n === 1 ? '' : 's'); }
  function clock(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return iso;
    const p = (n, w) => String(n).padStart(w || 2, '0');
    return p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds()) + '.' + p(d.getMilliseconds(), 3);
  }
  function stamp(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toISOString().replace('.000Z', 'Z');
  }
  // span says how long a number of seconds is, for countdowns: 41s, 3m 12s, 2h 5m, 3d 4h.
  function span(sec) {
    sec = Math.max(0, Math.round(sec));
    if (sec < 60) return sec + 's';
    if (sec < 3600) return Math.floor(sec / 60) + 'm ' + (sec % 60) + 's';
    if (sec < 172800) return Math.floor(sec / 3600) + 'h ' + Math.floor((sec % 3600) / 60) + 'm';
    return Math.floor(sec / 86400) + 'd ' + Math.floor((sec % 86400) / 3600) + 'h';
  }

  // ---- state and routes ---------------------------------------------------

  const st = {
    view: null, // the last fleet view (/api/updates)
    viewAt: 0, // performance.now() when it arrived
    node: null, // the last node page (/api/updates?node=)
    route: null,
    streams: {}, // name → EventSource
    events: [], // events shown, newest first
    eventsPaused: false,
    firstRender: false,
  };
  const MAX_EVENTS = 1000;

  function parseRoute() {
    const p = location.pathname;
    const q = new URLSearchParams(location.search);
    let m;
    if (p === '/') return { name: 'fleet', q };
    if ((m = p.match(/^\/nodes\/(.+)$/))) return { name: 'node', arg: decodeURIComponent(m[1]), q };
    if (p === '/rollouts') return { name: 'rollouts', q };
    if ((m = p.match(/^\/rollouts\/(.+)$/))) return { name: 'rollout', arg: decodeURIComponent(m[1]), q };
    if (p === '/events') return { name: 'events', q };
    if (p === '/spec') return { name: 'spec', q };
    return { name: 'notfound', q };
  }
  const TAB = { fleet: 'fleet', node: 'fleet', rollouts: 'rollouts', rollout: 'rollouts', events: 'events', spec: 'spec' };

  function go(href) {
    history.pushState(null, '', href);
    route();
  }
  document.addEventListener('click', (e) => {
    const a = e.target.closest('a');
    if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || url.pathname.startsWith('/api/') || url.pathname.startsWith('/assets/')) return;
    e.preventDefault();
    if (url.href !== location.href) go(url.pathname + url.search);
  });
  window.addEventListener('popstate', route);
  // A page that is left closes its streams: the browser allows only a few
  // connections per server.
  window.addEventListener('pagehide', () => { for (const name of Object.keys(st.streams)) close(name); });

  // setQuery replaces the page's query (filters, sort) without a new
  // history entry.
  function setQuery(values) {
    const q = new URLSearchParams(location.search);
    for (const [k, v] of Object.entries(values)) {
      if (v === '' || v === null || v === undefined) q.delete(k);
      else q.set(k, v);
    }
    const s = q.toString();
    history.replaceState(null, '', location.pathname + (s ? '?' + s : ''));
    st.route.q = q;
  }

  // ---- live streams -------------------------------------------------------

  // open keeps one EventSource per name at url, replacing one at another url.
  function open(name, url, handlers) {
    const cur = st.streams[name];
    if (cur && cur.url === new URL(url, location.href).href && cur.readyState !== EventSource.CLOSED) return cur;
    close(name);
    const es = new EventSource(url);
    for (const [ev, f] of Object.entries(handlers)) es.addEventListener(ev, f);
    st.streams[name] = es;
    return es;
  }
  function close(name) {
    if (st.streams[name]) {
      st.streams[name].close();
      delete st.streams[name];
    }
  }

  function connState(text, cls) {
    const c = $('#conn');
    c.className = 'conn ' + cls;
    c.textContent = text;
  }

  function followFleet() {
    const es = open('view', '/api/updates', {
      view: (e) => {
        if (!st.view) performance.mark('mms:view-received');
        st.view = JSON.parse(e.data);
        if (!st.viewParsed) { st.viewParsed = true; performance.mark('mms:view-parsed'); }
        st.viewAt = performance.now();
        connState('live', 'conn-live');
        render();
      },
    });
    es.onerror = () => connState(es.readyState === EventSource.CLOSED ? 'disconnected' : 'reconnecting', 'conn-down');
  }

  // ---- rendering ----------------------------------------------------------

  function route() {
    st.route = parseRoute();
    const r = st.route;
    for (const a of document.querySelectorAll('.tabs a')) a.classList.toggle('active', a.dataset.tab === TAB[r.name]);
    const app = $('#app');
    clear(app);
    if (r.name !== 'node') { close('node'); close('nodeEvents'); st.node = null; }
    if (r.name !== 'events') close('events');
    followFleet();
    switch (r.name) {
      case 'fleet': setupFleet(app); break;
      case 'node': setupNode(app, r.arg); break;
      case 'rollouts': case 'rollout': setupRollouts(app); break;
      case 'events': setupEvents(app); break;
      case 'spec': setupSpec(app); break;
      default:
        append(app, [h('h1', { text: 'Not found' }), h('p', { class: 'empty' }, 'No view at ', h('code', { text: location.pathname }), '. ', h('a', { href: '/', text: 'Back to the fleet' }))]);
    }
    render();
  }

  function render() {
    const v = st.view;
    const banner = $('#banner');
    if (v && v.error) {
      banner.hidden = false;
      banner.textContent = v.error;
    } else {
      banner.hidden = true;
    }
    if (v && v.spec) {
      const sp = v.spec;
      $('#specline').textContent = sp.state === 'live' ? (sp.format === 'v1' ? 'v1 ' + short(sp.digest) : 'serial ' + sp.serial) + ' · rev ' + sp.revision : 'no live spec';
      $('#specline').title = sp.line;
    }
    switch (st.route.name) {
      case 'fleet': renderFleet(); break;
      case 'node': renderNode(); break;
      case 'rollouts': case 'rollout': renderRollouts(); break;
      case 'spec': renderSpec(); break;
      default: return;
    }
    if (!st.firstRender && v && st.route.name === 'fleet') {
      performance.mark('mms:drawn');
      // The first fleet drawn: marked after the next frame, once painted
      // (the benchmark of the page reads it).
      st.firstRender = true;
      requestAnimationFrame(() => setTimeout(() => {
        performance.mark('mms:first-render');
        document.documentElement.dataset.firstRender = String(Math.round(performance.now()));
      }, 0));
    }
    document.documentElement.dataset.rendered = String((Number(document.documentElement.dataset.rendered) || 0) + 1);
  }

  function waiting(el) {
    replace(el, h('p', { class: 'empty', text: 'Reading the fleet…' }));
  }

  // ---- fleet --------------------------------------------------------------

  const COLUMNS = [
    { key: 'identity', label: 'Identity' },
    { key: 'applied', label: 'Applied', title: 'the spec the node runs' },
    { key: 'seen', label: 'Seen', title: 'the last spec it saw, when that is another one or was not applied' },
    { key: 'machines', label: 'Machines' },
    { key: 'message', label: 'Message', title: "the node's first problem" },
    { key: 'age', label: 'Age', title: 'since the node wrote its status', cls: 'num' },
    { key: 'flags', label: 'Flags' },
  ];

  function setupFleet(app) {
    const q = st.route.q;
    const search = h('input', { type: 'search', id: 'q', placeholder: 'Filter by identity', value: q.get('q') || '', 'aria-label': 'filter by identity' });
    const flag = h('select', { id: 'flag', 'aria-label': 'filter by flag' });
    const machine = h('select', { id: 'machine', 'aria-label': 'filter by machine' });
    search.addEventListener('input', () => { setQuery({ q: search.value }); renderFleet(); });
    flag.addEventListener('change', () => { setQuery({ flag: flag.value }); renderFleet(); });
    machine.addEventListener('change', () => { setQuery({ machine: machine.value }); renderFleet(); });
    const table = h('table', { class: 'grid', id: 'nodes' },
      h('thead', {}, h('tr', {}, COLUMNS.map((c) => h('th', {
        class: 'sortable ' + (c.cls || ''), 'data-key': c.key, title: c.title || null,
        onclick: () => {
          const cur = st.route.q.get('sort') || 'identity';
          const dir = cur === c.key && (st.route.q.get('dir') || 'asc') === 'asc' ? 'desc' : 'asc';
          setQuery({ sort: c.key === 'identity' && dir === 'asc' ? '' : c.key, dir: dir === 'asc' ? '' : dir });
          renderFleet();
        },
      }, c.label)))),
      h('tbody', {}));
    append(app, [
      h('div', { class: 'counts', id: 'counts' }),
      h('div', { class: 'filters' }, search, flag, machine, h('span', { class: 'shown', id: 'shown' })),
      h('div', { class: 'panel' }, table),
    ]);
  }

  function flagOptions(counts) {
    const names = Object.keys(counts.flags || {}).sort((a, b) => flagRank(a) - flagRank(b) || a.localeCompare(b));
    return names;
  }

  function fillSelect(sel, options, value) {
    const want = JSON.stringify(options);
    if (sel.dataset.options !== want) {
      clear(sel);
      for (const [v, label] of options) sel.appendChild(h('option', { value: v, text: label }));
      sel.dataset.options = want;
    }
    sel.value = value;
    if (sel.value !== value) {
      // the value is not among the options (a flag no node has now): keep it visible
      sel.appendChild(h('option', { value, text: value }));
      sel.value = value;
      sel.dataset.options = '';
    }
  }

  function machinesOf(n) {
    const d = n.node;
    const names = new Set();
    for (const m of d.machines || []) names.add(m.name);
    for (const e of d.entries || []) names.add(e.name);
    return names;
  }

  function sortValue(n, key) {
    const d = n.node;
    switch (key) {
      case 'identity': return d.identity || d.key;
      case 'applied': { const x = Number(n.applied); return isNaN(x) ? -1 : x; }
      case 'seen': return n.seen;
      case 'machines': return (d.machines || []).length;
      case 'message': return d.message || '';
      case 'age': return d.age_seconds;
      case 'flags': return (n.problem ? 1000 : 0) + (d.flags || []).length * 10 - Math.min(9, ...(d.flags || []).map((f) => flagRank(f.name)), 9) / 10;
    }
    return '';
  }

  function renderFleet() {
    const v = st.view;
    const tbody = $('#nodes tbody');
    if (!tbody) return;
    if (!v) { waiting($('#counts')); return; }
    const q = st.route.q;
    const text = (q.get('q') || '').toLowerCase();
    const flag = q.get('flag') || '';
    const machine = q.get('machine') || '';
    const sort = q.get('sort') || 'identity';
    const dir = q.get('dir') === 'desc' ? -1 : 1;

    // counts: each a button that filters
    const c = v.counts;
    const count = (n, label, value, cls) => h('button', {
      class: 'count ' + cls + (flag === value ? ' selected' : ''), type: 'button', 'data-flag': value,
      onclick: () => { setQuery({ flag: flag === value ? '' : value }); renderFleet(); },
    }, h('span', { class: 'n', text: String(n) }), h('span', { class: 'l', text: label }));
    const flags = flagOptions(c);
    replace($('#counts'),
      count(c.nodes, 'nodes', '', 'c-mute'),
      count(c.clean, 'clean', 'clean', 'c-ok'),
      count(c.problems, 'need attention', 'problems', c.problems ? 'c-bad' : 'c-mute'),
      flags.map((f) => count(c.flags[f], f, f, 'c-' + tone(f))));

    fillSelect($('#flag'), [['', 'All flags'], ['problems', 'Needing attention'], ['clean', 'Clean'], ...flags.map((f) => [f, f])], flag);
    const machines = new Set();
    for (const n of v.nodes) for (const m of machinesOf(n)) machines.add(m);
    fillSelect($('#machine'), [['', 'All machines'], ...[...machines].sort().map((m) => [m, m])], machine);

    let rows = v.nodes.filter((n) => {
      const d = n.node;
      if (text && !(d.identity || '').toLowerCase().includes(text) && !d.key.toLowerCase().includes(text)) return false;
      if (flag === 'problems' && !n.problem) return false;
      if (flag === 'clean' && d.flags.length) return false;
      if (flag && flag !== 'problems' && flag !== 'clean' && !d.flags.some((f) => f.name === flag)) return false;
      if (machine && !machinesOf(n).has(machine)) return false;
      return true;
    });
    if (sort !== 'identity' || dir !== 1) {
      rows = rows.slice().sort((a, b) => {
        const x = sortValue(a, sort), y = sortValue(b, sort);
        const c1 = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
        return c1 * dir || String(a.node.identity).localeCompare(String(b.node.identity));
      });
    }
    for (const th of document.querySelectorAll('#nodes th')) {
      th.setAttribute('aria-sort', th.dataset.key === sort ? (dir === 1 ? 'ascending' : 'descending') : 'none');
    }
    $('#shown').textContent = rows.length === v.nodes.length ? plural(v.nodes.length, 'node') : rows.length + ' of ' + plural(v.nodes.length, 'node');

    if (!rows.length) {
      replace(tbody, h('tr', {}, h('td', { colSpan: COLUMNS.length, class: 'empty', text: v.nodes.length ? 'No node matches the filter.' : 'No agent has written its status yet.' })));
      return;
    }
    drawRows(tbody, rows);
  }

  // drawRows makes tbody show rows, in order. A row whose words did not
  // change is kept (its age updated in place), so a live update of 1,000
  // nodes redraws only what changed; and at most ROW_BUDGET rows are built
  // at once, the rest in the next pass, so the first screen of a large
  // fleet is drawn at once and the page stays responsive.
  const ROW_BUDGET = 150;
  let morePass = 0;
  function drawRows(tbody, rows) {
    const cache = st.rowCache || (st.rowCache = new Map());
    if (tbody.dataset.rows !== 'nodes') { clear(tbody); tbody.dataset.rows = 'nodes'; }
    let built = 0, pending = false;
    const want = [];
    const seen = new Set();
    for (const n of rows) {
      const key = n.node.key;
      seen.add(key);
      const sig = rowSig(n);
      let c = cache.get(key);
      if (!c || c.sig !== sig) {
        if (built >= ROW_BUDGET) {
          pending = true;
          if (!c) continue; // drawn in the next pass
        } else {
          built++;
          const tr = nodeRow(n);
          c = { tr, sig, age: n.age, ageTd: tr.querySelector('td.age') };
          cache.set(key, c);
        }
      }
      if (c.age !== n.age) {
        c.age = n.age;
        c.ageTd.textContent = n.age;
        c.ageTd.title = n.node.age_seconds.toFixed(1) + ' s';
      }
      want.push(c.tr);
    }
    for (const key of cache.keys()) if (!seen.has(key)) cache.delete(key);
    let child = tbody.firstChild;
    for (const tr of want) {
      if (child === tr) child = child.nextSibling;
      else tbody.insertBefore(tr, child);
    }
    while (child) {
      const next = child.nextSibling;
      tbody.removeChild(child);
      child = next;
    }
    clearTimeout(morePass);
    if (pending) morePass = setTimeout(renderFleet, 0);
    else if (!st.allRows) {
      st.allRows = true;
      requestAnimationFrame(() => setTimeout(() => performance.mark('mms:all-rows'), 0));
    }
  }

  // rowSig is everything a node's row shows but its age.
  function rowSig(n) {
    const d = n.node;
    return JSON.stringify([d.identity, d.key, n.applied, n.seen, n.machines, n.problem, d.message, d.flags, (d.machines || []).map((m) => [m.name, m.version, m.state, m.last_error, m.last_outcome, m.compiled_in])]);
  }

  function nodeRow(n) {
    const d = n.node;
    const id = d.identity || d.key;
    const chips = (d.machines || []).filter((m) => !m.compiled_in).map((m) => h('span', {
      class: 'chip' + (m.compiled_in ? ' compiled' : '') + (!m.state || m.last_error ? ' ch-bad' : ''),
      title: (m.last_error ? m.last_error : (m.last_outcome || '')) || null,
    }, m.name + ' ', m.version ? h('span', { class: 'dim', text: m.version + ' ' }) : null, h('span', { class: 'st', text: m.state || 'not running' })));
    return h('tr', { 'data-identity': id, class: n.problem ? 'row-bad' : (d.flags.length ? 'row-warn' : '') },
      h('td', { class: 'id' }, h('a', { href: nodeHref(id), text: id })),
      h('td', { class: 'nowrap', text: n.applied }),
      h('td', { class: 'nowrap', text: n.seen }),
      h('td', { class: 'nowrap', title: n.machines }, chips.length ? chips : h('span', { class: 'dim', text: n.machines })),
      h('td', { class: 'msg one', text: d.message, title: d.message || null }),
      h('td', { class: 'num nowrap age', text: n.age, title: d.age_seconds !== undefined ? d.age_seconds.toFixed(1) + ' s' : null }),
      h('td', {}, d.flags.map((f) => badge(f.name, f.detail))));
  }

  // ---- node ---------------------------------------------------------------

  function setupNode(app, name) {
    append(app, [
      h('div', { class: 'crumbs' }, h('a', { href: '/', text: 'Fleet' }), ' / ', name),
      h('div', { id: 'node' }, h('p', { class: 'empty', text: 'Reading the node…' })),
      h('h2', { text: 'Recent events' }),
      h('div', { class: 'panel' }, h('table', { class: 'grid events', id: 'node-events' },
        h('thead', {}, h('tr', {}, h('th', { text: 'Time' }), h('th', { text: 'Machine' }), h('th', { text: 'Event' }))),
        h('tbody', {}, h('tr', {}, h('td', { colSpan: 3, class: 'empty', text: 'Events of the last hour appear here, then new ones as they happen.' }))))),
    ]);
    st.node = null;
    st.nodeEvents = [];
    const es = open('node', '/api/updates?node=' + enc(name), {
      node: (e) => { st.node = JSON.parse(e.data); renderNode(); },
    });
    es.onerror = () => {};
    followNodeEvents(name, '1h');
  }

  function followNodeEvents(name, since) {
    open('nodeEvents', '/api/events?' + (since ? 'since=' + since + '&' : '') + 'identity=' + enc(name), {
      ready: () => { if (since) st.nodeEvents = []; },
      event: (e) => {
        st.nodeEvents.unshift(JSON.parse(e.data));
        if (st.nodeEvents.length > 100) st.nodeEvents.length = 100;
        renderNodeEvents();
      },
      failure: (e) => {
        close('nodeEvents');
        const tb = $('#node-events tbody');
        if (tb) replace(tb, h('tr', {}, h('td', { colSpan: 3, class: 'empty', text: JSON.parse(e.data).error + (since ? ' — following new events only.' : '') })));
        if (since) followNodeEvents(name, '');
      },
    });
  }

  function renderNodeEvents() {
    const tb = $('#node-events tbody');
    if (!tb) return;
    const frag = document.createDocumentFragment();
    for (const ev of st.nodeEvents) {
      frag.appendChild(h('tr', {}, h('td', { class: 'time', text: clock(ev.time), title: ev.time }), h('td', { class: 'nowrap', text: ev.machine }), h('td', { class: 'what', text: ev.what })));
    }
    clear(tb);
    tb.appendChild(frag);
  }

  function renderNode() {
    const box = $('#node');
    const p = st.node;
    if (!box || !p) return;
    if (!p.node) {
      replace(box, h('h1', { text: st.route.arg }), h('p', { class: 'empty', text: p.error || 'No such node.' }));
      return;
    }
    const d = p.node.node;
    const det = p.detail;
    const lines = h('dl', { class: 'kv', id: 'node-lines' }, det.lines.map((l) => [h('dt', { text: l.label }), h('dd', { text: l.text })]));
    const entries = h('table', { class: 'grid', id: 'entries' },
      h('thead', {}, h('tr', {}, ['Entry', 'Outcome', 'Version', 'State', 'Health', 'Checksum', 'Reason'].map((t) => h('th', { text: t })))),
      h('tbody', {}, det.entries.length ? det.entries.map((e) => h('tr', { 'data-entry': e.name },
        h('td', { class: 'id', text: e.name }),
        h('td', {}, badge(e.outcome)),
        h('td', { class: 'nowrap', text: e.version }),
        h('td', { class: 'nowrap', text: e.state }),
        h('td', {}, e.health ? badge(e.health) : null),
        h('td', { class: 'mono', text: e.checksum }),
        h('td', { class: 'msg', text: e.reason }))) : h('tr', {}, h('td', { colSpan: 7, class: 'empty', text: 'No spec entry.' }))));
    const machines = h('table', { class: 'grid', id: 'machines' },
      h('thead', {}, h('tr', {}, ['Machine', 'Version', 'State', 'Last outcome', 'Errors'].map((t) => h('th', { text: t })))),
      h('tbody', {}, det.machines.map((m) => h('tr', {},
        h('td', { class: 'id', text: m.name }), h('td', { text: m.version }), h('td', { class: 'nowrap', text: m.state }),
        h('td', { text: m.last_outcome }), h('td', { class: 'msg', text: m.errors })))));
    const keys = h('table', { class: 'grid', id: 'keys' },
      h('thead', {}, h('tr', {}, h('th', { text: 'Trusted key' }), h('th', { text: 'Signed the live spec' }))),
      h('tbody', {}, p.keys.length ? p.keys.map((k) => h('tr', {},
        h('td', { class: 'keyid', text: k.key_id }),
        h('td', {}, k.signed ? badge('yes') : h('span', { class: 'dim', text: 'no' })))) : h('tr', {}, h('td', { colSpan: 2, class: 'empty', text: 'The node does not say (or accepts any spec).' }))));
    const rollouts = p.rollouts.length ? h('div', { class: 'panel' }, h('table', { class: 'grid', id: 'node-rollouts' },
      h('thead', {}, h('tr', {}, ['Rollout', 'Wave', 'State', 'Version', 'Detail'].map((t) => h('th', { text: t })))),
      h('tbody', {}, p.rollouts.map((r) => h('tr', {},
        h('td', {}, h('a', { href: '/rollouts/' + enc(r.machine), text: r.machine }), r.halted ? [' ', badge('halted')] : null),
        h('td', { class: 'nowrap', text: r.wave + ' of ' + r.waves }),
        h('td', {}, badge(r.node.state)),
        h('td', { text: r.node.version || '' }),
        h('td', { class: 'msg', text: r.node.detail || '' })))))) : null;
    replace(box,
      h('div', { class: 'head' }, h('h1', { text: d.identity || d.key }), d.flags.map((f) => badge(f.name, f.detail))),
      h('p', { class: 'sub', text: d.message || 'No problem.' }),
      h('div', { class: 'cols' },
        h('div', {},
          h('h2', { text: 'Entries' }), h('div', { class: 'panel' }, entries),
          h('h2', { text: 'Machines' }), h('div', { class: 'panel' }, machines),
          det.problems.length ? [h('h2', { text: 'Problems' }), h('ul', { class: 'problems', id: 'problems' }, det.problems.map((x) => h('li', { text: x })))] : null),
        h('div', {},
          h('h2', { text: 'Status' }), lines,
          h('h2', { text: 'Trusted keys' }), h('div', { class: 'panel' }, keys),
          rollouts ? [h('h2', { text: 'Rollouts' }), rollouts] : null)));
  }

  // ---- rollouts -----------------------------------------------------------

  function setupRollouts(app) {
    const one = st.route.name === 'rollout';
    append(app, [
      one ? h('div', { class: 'crumbs' }, h('a', { href: '/rollouts', text: 'Rollouts' }), ' / ', st.route.arg) : null,
      h('div', { id: 'rollouts' }),
    ]);
  }

  const NODE_CAP = 60; // nodes listed per wave on the overview

  function renderRollouts() {
    const box = $('#rollouts');
    const v = st.view;
    if (!box) return;
    if (!v) { waiting(box); return; }
    const one = st.route.name === 'rollout' ? st.route.arg : null;
    let list = v.rollouts;
    if (one) list = list.filter((r) => r.rollout.machine === one);
    if (!list.length) {
      const why = v.spec && v.spec.state !== 'live' ? v.spec.line : one ? 'The live spec has no entry "' + one + '" with a rollout policy.' : 'The live spec has no entry with a rollout policy.';
      replace(box, h('p', { class: 'empty', text: why }));
      return;
    }
    replace(box, list.map((r) => rolloutCard(r, !!one)));
  }

  function rolloutCard(pr, full) {
    const r = pr.rollout;
    let state = 'under way', cls = 'info';
    if (r.problem) { state = 'policy error'; cls = 'bad'; }
    else if (r.halted) { state = 'halted'; cls = 'bad'; }
    else if (r.done) { state = 'done'; cls = 'ok'; }
    else if (r.paused) { state = 'paused'; cls = 'warn'; }
    const status = h('div', { class: 'status' }, h('span', { class: 'badge b-' + cls, text: state }), h('span', { class: 'line', text: pr.status }));
    if (pr.pause_seconds > 0) {
      const until = st.viewAt + pr.pause_seconds * 1000;
      status.appendChild(h('span', { class: 'badge b-info countdown', 'data-until': String(until), text: 'next wave in ' + span(pr.pause_seconds) }));
    }
    const waves = h('div', { class: 'waves' }, r.waves.map((w) => {
      const tally = {};
      for (const n of w.nodes) tally[n.state] = (tally[n.state] || 0) + 1;
      const order = ['healthy', 'pending', 'held', 'old', 'stale', 'unhealthy', 'rolled_back', 'failed'];
      const parts = Object.keys(tally).sort((a, b) => order.indexOf(a) - order.indexOf(b)).map((s) => tally[s] + ' ' + s);
      const d = w.decision || {};
      const decision = d.proceed ? (r.halted || r.done ? '' : 'may proceed') : (d.held || '');
      // a held node's detail is its wave's decision: say it once, for the wave
      const shared = (d.held || '').replace(/^held: /, '');
      const nodes = full ? w.nodes : w.nodes.slice(0, NODE_CAP);
      return h('div', {
        class: 'wave' + (r.halted && r.halted_at === w.wave ? ' halted-here' : (!r.halted && !r.done && r.current_wave === w.wave ? ' current' : '')),
        'data-wave': String(w.wave),
      },
        h('div', { class: 'whead' }, h('h3', { text: 'Wave ' + w.wave }), h('span', { class: 'sub', text: 'size ' + w.size + ' · ' + plural(w.nodes.length, 'node') })),
        h('div', { class: 'tally', text: parts.join(' · ') || 'no node' }),
        decision ? h('div', { class: 'decision', text: decision }) : null,
        nodes.map((n) => h('div', { class: 'rnode', 'data-identity': n.identity, 'data-state': n.state },
          h('a', { class: 'who', href: nodeHref(n.identity), text: n.identity }),
          badge(n.state),
          n.version ? h('span', { class: 'ver', text: n.version }) : null,
          n.detail && n.detail !== shared ? h('span', { class: 'detail', text: n.detail }) : null)),
        w.nodes.length > nodes.length ? h('a', { href: '/rollouts/' + enc(r.machine), text: 'and ' + (w.nodes.length - nodes.length) + ' more' }) : null);
    }));
    return h('section', { class: 'rollout' + (r.halted ? ' halted' : ''), 'data-machine': r.machine },
      h('div', { class: 'rhead' },
        h('a', { class: 'machine', href: '/rollouts/' + enc(r.machine), text: r.machine }),
        h('span', { class: 'versions', text: pr.versions }),
        h('span', { class: 'policy', text: pr.policy })),
      status,
      (pr.notes || []).map((note) => h('div', { class: 'skipped', text: note })),
      r.problem ? null : waves);
  }

  // countdowns tick between views
  setInterval(() => {
    for (const el of document.querySelectorAll('.countdown[data-until]')) {
      const left = (Number(el.dataset.until) - performance.now()) / 1000;
      el.textContent = left > 0 ? 'next wave in ' + span(left) : 'next wave starting';
    }
  }, 1000);

  // ---- events -------------------------------------------------------------

  const SINCE = [['', 'live only'], ['5m', 'last 5 minutes'], ['15m', 'last 15 minutes'], ['1h', 'last hour'], ['6h', 'last 6 hours'], ['24h', 'last 24 hours']];
  const TYPES = ['transition', 'machines', 'archive', 'host', 'exec', 'kv', 'file', 'timer', 'schedule', 'expression', 'metric', 'nagios', 'gossip'];

  function setupEvents(app) {
    const q = st.route.q;
    const identity = h('input', { type: 'search', id: 'ev-identity', placeholder: 'Node identity', value: q.get('identity') || '', 'aria-label': 'node' });
    const machine = h('input', { type: 'search', id: 'ev-machine', placeholder: 'Machine', value: q.get('machine') || '', 'aria-label': 'machine' });
    const type = h('input', { type: 'search', id: 'ev-type', placeholder: 'Type (transition, exec…)', value: q.get('type') || '', list: 'ev-types', 'aria-label': 'type' });
    const since = h('select', { id: 'ev-since', 'aria-label': 'replay' }, SINCE.map(([v, l]) => h('option', { value: v, text: l })));
    since.value = q.get('since') || '';
    const pause = h('button', { class: 'btn', type: 'button', id: 'ev-pause', text: 'Pause' });
    let timer = null;
    const apply = () => {
      setQuery({ identity: identity.value.trim(), machine: machine.value.trim(), type: type.value.trim(), since: since.value });
      followEvents();
    };
    for (const el of [identity, machine, type]) el.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(apply, 400); });
    since.addEventListener('change', apply);
    pause.addEventListener('click', () => {
      st.eventsPaused = !st.eventsPaused;
      pause.textContent = st.eventsPaused ? 'Resume' : 'Pause';
      if (!st.eventsPaused) renderEvents();
    });
    append(app, [
      h('div', { class: 'filters' }, identity, machine, type, h('datalist', { id: 'ev-types' }, TYPES.map((t) => h('option', { value: t }))),
        h('label', {}, 'replay', since), pause, h('span', { class: 'shown', id: 'ev-status' })),
      h('div', { class: 'panel' }, h('table', { class: 'grid events', id: 'events' },
        h('thead', {}, h('tr', {}, ['Time', 'Node', 'Machine', 'Type', 'Event'].map((t) => h('th', { text: t })))),
        h('tbody', {}))),
    ]);
    followEvents();
  }

  function followEvents() {
    const q = new URLSearchParams();
    for (const k of ['identity', 'machine', 'type', 'since']) if (st.route.q.get(k)) q.set(k, st.route.q.get(k));
    st.events = [];
    renderEvents();
    const status = $('#ev-status');
    status.textContent = 'connecting…';
    const since = st.route.q.get('since');
    const es = open('events', '/api/events?' + q.toString(), {
      ready: () => {
        // (re)connected: a replay starts again from its beginning
        if (since) { st.events = []; renderEvents(); }
        status.textContent = since ? 'the last ' + since + ', then live' : 'live events';
      },
      event: (e) => {
        st.events.unshift(JSON.parse(e.data));
        if (st.events.length > MAX_EVENTS) st.events.length = MAX_EVENTS;
        if (!st.eventsPaused) scheduleEvents();
      },
      failure: (e) => {
        status.textContent = JSON.parse(e.data).error;
        close('events');
      },
    });
    es.onerror = () => { if (st.streams.events === es) status.textContent = 'reconnecting…'; };
  }

  let eventsQueued = false;
  function scheduleEvents() {
    if (eventsQueued) return;
    eventsQueued = true;
    requestAnimationFrame(() => { eventsQueued = false; renderEvents(); });
  }

  function renderEvents() {
    const tb = $('#events tbody');
    if (!tb) return;
    const frag = document.createDocumentFragment();
    for (const ev of st.events) {
      frag.appendChild(h('tr', { 'data-identity': ev.identity },
        h('td', { class: 'time', text: clock(ev.time), title: ev.line }),
        h('td', { class: 'id' }, h('a', { href: nodeHref(ev.identity), text: ev.identity })),
        h('td', { class: 'nowrap', text: ev.machine }),
        h('td', {}, h('span', { class: 'badge b-type' + (ev.transition ? ' transition' : ''), text: ev.type })),
        h('td', { class: 'what', text: ev.what })));
    }
    if (!st.events.length) frag.appendChild(h('tr', {}, h('td', { colSpan: 5, class: 'empty', text: 'No event yet. Events appear here as the agents publish them.' })));
    clear(tb);
    tb.appendChild(frag);
    const status = $('#ev-status');
    if (status && st.events.length) status.dataset.count = String(st.events.length);
  }

  // ---- spec ---------------------------------------------------------------

  function setupSpec(app) {
    append(app, [h('div', { id: 'spec' })]);
  }

  function renderSpec() {
    const box = $('#spec');
    const v = st.view;
    if (!box) return;
    if (!v) { waiting(box); return; }
    const sp = v.spec;
    const d = v.spec_detail;
    if (!sp || !d) {
      replace(box, h('h1', { text: 'Spec' }), h('p', { class: 'empty', text: sp ? sp.line : v.error || 'No spec.' }));
      return;
    }
    let expires = 'never';
    if (d.expires) {
      expires = stamp(d.expires) + (d.expires_in_seconds >= 0 ? ' (in ' + span(d.expires_in_seconds) + ')' : ' (passed ' + span(-d.expires_in_seconds) + ' ago)');
    }
    const facts = [
      ['Where', sp.bucket + '/' + sp.key + ' (revision ' + sp.revision + ')'],
      ['Format', d.format],
      ['Serial', d.format === 'v1' ? 'none (v1)' : String(d.serial)],
      ['Issued', stamp(d.issued_at) || 'not said'],
      ['Expires', expires],
      ['Digest', d.digest],
      ['Entries', String(d.entries.length)],
    ];
    const keys = h('table', { class: 'grid', id: 'spec-keys' },
      h('thead', {}, h('tr', {}, h('th', { text: 'Key' }), h('th', { text: 'Signed this spec' }), h('th', { class: 'num', text: 'Trusted by' }))),
      h('tbody', {}, d.keys.length ? d.keys.map((k) => h('tr', {},
        h('td', { class: 'keyid', text: k.key_id }),
        h('td', {}, k.signed ? badge('yes', 'the envelope carries a signature naming this key (verified by each node, not here)') : h('span', { class: 'dim', text: 'no' })),
        h('td', { class: 'num', text: k.trusted_by + ' of ' + plural(d.reporting, 'node') })))
        : h('tr', {}, h('td', { colSpan: 3, class: 'empty', text: 'No signature names a key, and no node says whom it trusts.' }))));
    const entries = h('table', { class: 'grid', id: 'spec-entries' },
      h('thead', {}, h('tr', {}, ['Name', 'Source', 'Checksum', 'Match', 'Health', 'Rollout', 'Other'].map((t) => h('th', { text: t })))),
      h('tbody', {}, d.entries.map((e) => h('tr', { 'data-entry': e.name },
        h('td', { class: 'id' }, e.rollout ? h('a', { href: '/rollouts/' + enc(e.name), text: e.name }) : e.name),
        h('td', { class: 'mono wrap', text: e.source }),
        h('td', { class: 'mono', text: short(e.checksum), title: e.checksum + (e.verify_checksum ? '\nSHA256SUMS ' + e.verify_checksum : '') }),
        h('td', { class: 'mono', text: e.match || 'every node' }),
        h('td', { text: e.health ? e.health.states.join(', ') + ' within ' + e.health.within + (e.health.fail_states && e.health.fail_states.length ? '; fails on ' + e.health.fail_states.join(', ') : '') : '' }),
        h('td', { text: e.rollout ? 'waves ' + e.rollout.waves.join(', ') + (e.rollout.pause ? ', pause ' + e.rollout.pause : '') + (e.rollout.stale ? ', stale: ' + e.rollout.stale : '') : '' }),
        h('td', { class: 'sub', text: [e.governor ? 'governor ' + e.governor : '', e.auth ? 'auth ' + e.auth : '', e.credentials ? 'v1 credentials (not shown)' : '', e.size ? e.size + ' bytes' : ''].filter(Boolean).join(' · ') })))));
    replace(box,
      h('h1', { text: 'Spec' }),
      h('p', { class: 'sub', text: sp.line }),
      h('div', { class: 'cols' },
        h('div', {}, h('h2', { text: 'Envelope' }), h('dl', { class: 'kv', id: 'spec-facts' }, facts.map(([k, val]) => [h('dt', { text: k }), h('dd', { class: k === 'Digest' ? 'mono wrap' : '', text: val })]))),
        h('div', {}, h('h2', { text: 'Signers and trust' }), h('div', { class: 'panel' }, keys),
          h('p', { class: 'sub', id: 'thresholds', text: Object.entries(d.thresholds || {}).map(([k, n]) => plural(n, 'node') + ' ' + (n === 1 ? 'requires ' : 'require ') + plural(Number(k), 'trusted signature')).join('; ') }),
          h('p', { class: 'sub', text: 'Signatures are decoded here, not verified: each node verifies the spec, and its Seen column says what it did with it.' }),
          d.unsigned.length ? h('p', { class: 'banner', text: 'Accept any spec, signed or not: ' + d.unsigned.join(', ') }) : null)),
      h('h2', { text: 'Entries' }), h('div', { class: 'panel' }, entries));
  }

  route();
})();
