// dottxt-stream.js: read the Server-Sent Events of dottxt.web.sse_events in the browser.
//
//   import { streamFields } from "/static/dottxt-stream.js";
//   const live = streamFields("/triage?message=...", {
//     onField: { intent: (value, field) => ..., "steps/*": (value, field) => ... },
//     onDone: (result) => ..., onError: ({ message, type }) => ...,
//   });
//   live.document; live.close();
//
// A dependency-free ES module: no build step, no CDN. Ops are applied as RFC 6902 JSON Patch with
// RFC 6901 pointers (`~1` is `/`, `~0` is `~`) to a live document. A field is the op's pointer without
// its leading `/`, still escaped (`a~1b`); a pattern's `*` matches exactly one segment, as on_field does
// in Python. The stream is never reopened behind your back: a lost connection is an error, because a
// reconnect would ask the model for a second answer.

/** Thrown (and reported to onError as type "PatchError") for an op that cannot be applied. */
class PatchError extends Error {
  constructor(message) {
    super(message);
    this.name = "PatchError";
  }
}

const INDEX = /^(0|[1-9][0-9]*)$/;

function parsePointer(pointer) {
  if (pointer === "") return [];
  if (typeof pointer !== "string" || pointer[0] !== "/") throw new PatchError(`bad JSON Pointer ${JSON.stringify(pointer)}`);
  return pointer.slice(1).split("/").map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function escapeSegment(key) {
  return String(key).replace(/~/g, "~0").replace(/\//g, "~1");
}

function isContainer(value) {
  return value !== null && typeof value === "object";
}

function own(object, key) {
  return Object.prototype.hasOwnProperty.call(object, key);
}

// Assigning `__proto__` would change the object's prototype; a JSON key is always an own property.
function setMember(object, key, value) {
  Object.defineProperty(object, key, { value, writable: true, enumerable: true, configurable: true });
}

function child(node, token, pointer) {
  if (Array.isArray(node)) {
    if (!INDEX.test(token) || Number(token) >= node.length) throw new PatchError(`no item ${token} at ${pointer}`);
    return node[Number(token)];
  }
  if (isContainer(node) && own(node, token)) return node[token];
  throw new PatchError(`no member ${JSON.stringify(token)} at ${pointer}`);
}

function walk(doc, tokens, pointer) {
  let node = doc;
  for (const token of tokens) node = child(node, token, pointer);
  return node;
}

function arrayIndex(array, token, pointer, appendAllowed) {
  if (appendAllowed && token === "-") return array.length;
  const limit = appendAllowed ? array.length : array.length - 1;
  if (!INDEX.test(token) || Number(token) > limit) throw new PatchError(`bad array index ${token} in ${pointer}`);
  return Number(token);
}

// Each operation returns [newRoot, resolvedTokens] (resolved: `-` replaced by the index it landed at).
function add(doc, pointer, value) {
  const tokens = parsePointer(pointer);
  if (tokens.length === 0) return [value, tokens];
  const parent = walk(doc, tokens.slice(0, -1), pointer);
  const last = tokens[tokens.length - 1];
  if (Array.isArray(parent)) {
    const index = arrayIndex(parent, last, pointer, true);
    parent.splice(index, 0, value);
    return [doc, [...tokens.slice(0, -1), String(index)]];
  }
  if (!isContainer(parent)) throw new PatchError(`cannot add ${pointer}: its parent is not a container`);
  setMember(parent, last, value);
  return [doc, tokens];
}

function remove(doc, pointer) {
  const tokens = parsePointer(pointer);
  if (tokens.length === 0) return [undefined, tokens];
  const parent = walk(doc, tokens.slice(0, -1), pointer);
  const last = tokens[tokens.length - 1];
  if (Array.isArray(parent)) {
    parent.splice(arrayIndex(parent, last, pointer, false), 1);
  } else {
    child(parent, last, pointer);
    delete parent[last];
  }
  return [doc, tokens];
}

function equal(a, b) {
  if (a === b) return true;
  if (!isContainer(a) || !isContainer(b) || Array.isArray(a) !== Array.isArray(b)) return false;
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((key) => own(b, key) && equal(a[key], b[key]));
}

function clone(value) {
  return isContainer(value) ? JSON.parse(JSON.stringify(value)) : value;
}

/** Apply one RFC 6902 operation to `doc`; returns [newRoot, resolvedTokens]. */
export function applyOp(doc, op) {
  if (!isContainer(op) || typeof op.path !== "string") throw new PatchError(`not a patch operation: ${JSON.stringify(op)}`);
  const needsValue = op.op === "add" || op.op === "replace" || op.op === "test";
  if (needsValue && !own(op, "value")) throw new PatchError(`${op.op} ${op.path} has no value`);
  switch (op.op) {
    case "add":
      return add(doc, op.path, clone(op.value));
    case "remove":
      return remove(doc, op.path);
    case "replace": {
      const [root] = remove(doc, op.path);
      return add(root, op.path, clone(op.value));
    }
    case "move": {
      if (op.path !== op.from && op.path.startsWith(op.from + "/")) throw new PatchError(`cannot move ${op.from} into itself`);
      const value = walk(doc, parsePointer(op.from), op.from);
      const [root] = remove(doc, op.from);
      return add(root, op.path, value);
    }
    case "copy":
      return add(doc, op.path, clone(walk(doc, parsePointer(op.from), op.from)));
    case "test":
      if (!equal(walk(doc, parsePointer(op.path), op.path), op.value)) throw new PatchError(`test failed at ${op.path}`);
      return [doc, parsePointer(op.path)];
    default:
      throw new PatchError(`unknown op ${JSON.stringify(op.op)}`);
  }
}

// onField patterns: [pattern string, segment list with null for `*`, callback], in the order given.
function compileRoutes(onField) {
  return Object.entries(onField || {}).map(([pattern, callback]) => {
    if (typeof callback !== "function") throw new TypeError(`onField[${JSON.stringify(pattern)}] is not a function`);
    const field = pattern.startsWith("/") ? pattern.slice(1) : pattern;
    const parts = field === "" ? [] : field.split("/").map((part) => (part === "*" ? null : part));
    return [field, parts, callback];
  });
}

function matches(parts, field, rawField, segments) {
  if (!parts.includes(null)) return field === rawField || field === segments.join("/");
  return parts.length === segments.length && parts.every((want, i) => want === null || want === segments[i]);
}

/**
 * Read the SSE frames at `url` (`op`, then `done` or `error`), applying each op to a live document.
 *
 * onOp(op, document) for every op; onField[pattern](value, field) for every op whose field matches,
 * in wire order (patterns in the order given); onDone(result) with the final validated document;
 * onError({message, type}) once, for an `error` frame, a lost connection, an op that cannot be
 * applied or a callback that throws. Returns {close(), document}; `document` is the live document.
 */
export function streamFields(url, { onOp, onField, onDone, onError } = {}) {
  const routes = compileRoutes(onField);
  const source = new EventSource(url);
  let doc;
  let finished = false;

  const finish = () => {
    finished = true;
    source.close();
  };
  const fail = (error) => {
    if (finished) return;
    finish();
    if (onError) onError(error);
  };

  source.addEventListener("op", (event) => {
    if (finished) return;
    try {
      const op = JSON.parse(event.data);
      const [root, tokens] = applyOp(doc, op);
      doc = root;
      if (onOp) onOp(op, doc);
      if (routes.length === 0) return;
      const segments = tokens.map(escapeSegment);
      const field = segments.join("/");
      const value = op.op === "remove" ? undefined : op.op === "add" || op.op === "replace" ? op.value : clone(walk(doc, tokens, op.path));
      for (const [pattern, parts, callback] of routes) {
        if (finished) return;
        if (matches(parts, pattern, op.path.slice(1), segments)) callback(value, field);
      }
    } catch (error) {
      fail({ message: String(error && error.message ? error.message : error), type: (error && error.name) || "Error" });
    }
  });

  source.addEventListener("done", (event) => {
    if (finished) return;
    finish();
    if (onDone) onDone(JSON.parse(event.data));
  });

  // One event name, two meanings: an `event: error` frame from the server carries data; the
  // browser's own connection error does not.
  source.addEventListener("error", (event) => {
    if (typeof event.data === "string") {
      let error;
      try {
        error = JSON.parse(event.data);
      } catch {
        error = { message: event.data, type: "Error" };
      }
      fail(error);
    } else {
      fail({ message: "the connection was lost before the stream finished", type: "ConnectionError" });
    }
  });

  return {
    close: finish,
    get document() {
      return doc;
    },
  };
}
