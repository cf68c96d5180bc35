// js-filter: a wasmsink transform guest in JavaScript (world transform-plugin).
//
// Skips test records: those whose value is a JSON object with `"test": true`
// (the field name is `guest.config.test-field`). Wraps every other record as
// {"topic", "partition", "offset", "key", "timestamp", "data"}, where `data`
// is the value parsed as JSON, or the value as a string when it is not JSON,
// and sends it to `guest.config.path` (default: the connector's URL).
//
// WIT values in JavaScript (componentize-js): records are objects with
// camelCase fields, enums are strings ('create-time'), options are the value
// or `undefined`, list<u8> is a Uint8Array, s64 is a BigInt, a variant is
// { tag, val }, and throwing a string from `init` returns it as the error.

import { log, enabled } from 'wasmsink:plugin/logging@0.1.0';

const decoder = new TextDecoder();
const encoder = new TextEncoder();

let testField = 'test';
let path;

export const lifecycle = {
  init(config) {
    for (const [key, value] of config) {
      if (key === 'test-field') {
        testField = value;
      } else if (key === 'path') {
        path = value.startsWith('/') || value.startsWith('?') ? value : `/${value}`;
      } else {
        throw `unknown guest.config.${key} (known: test-field, path)`;
      }
    }
  },
};

export const transformer = {
  transform(rec) {
    const text = rec.value === undefined ? undefined : decoder.decode(rec.value);
    let data = text ?? null;
    try {
      data = JSON.parse(text);
    } catch {
      // Not JSON (or a tombstone): keep the text.
    }
    const where = `${rec.topic}/${rec.partition}@${rec.offset}`;
    if (data !== null && typeof data === 'object' && data[testField] === true) {
      if (enabled('debug')) log('debug', 'js-filter', `skipping test record ${where}`);
      return { tag: 'skip' };
    }
    const envelope = {
      topic: rec.topic,
      partition: rec.partition,
      offset: Number(rec.offset),
      key: rec.key === undefined ? null : decoder.decode(rec.key),
      timestamp: rec.timestampType === 'not-available' ? null : Number(rec.timestampMs),
      data,
    };
    return {
      tag: 'deliver',
      val: {
        method: undefined,
        pathAndQuery: path,
        headers: [['content-type', 'application/json']],
        body: encoder.encode(JSON.stringify(envelope)),
      },
    };
  },
};
