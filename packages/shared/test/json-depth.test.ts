/**
 * `jsonNestsDeeperThan` judges JSON text's nesting without parsing it: brackets inside strings (with
 * escaped quotes and backslash runs) do not count, and `readFrame` refuses a deep frame before it
 * reaches JSON.parse.
 */
import { describe, expect, it, vi } from 'vitest';
import { jsonNestsDeeperThan } from '../src/json-depth.js';
import { AGENT_MESSAGE_SINCE, AgentMessageSchema, MAX_FRAME_DEPTH, readFrame } from '../src/protocol.js';

const nested = (depth: number, open = '[', close = ']') => `${open.repeat(depth)}${close.repeat(depth)}`;

describe('jsonNestsDeeperThan', () => {
  it('counts arrays and objects inside one another, and only up to the deepest point', () => {
    expect(jsonNestsDeeperThan(nested(3), 3)).toBe(false);
    expect(jsonNestsDeeperThan(nested(4), 3)).toBe(true);
    expect(jsonNestsDeeperThan('{"a":{"b":{"c":1}}}', 3)).toBe(false);
    expect(jsonNestsDeeperThan('{"a":{"b":{"c":[1]}}}', 3)).toBe(true);
    // Siblings are not nesting: a long flat list of small objects is one level and one more.
    expect(jsonNestsDeeperThan(`[${Array.from({ length: 1000 }, () => '{"x":[1]}').join(',')}]`, 3)).toBe(false);
    expect(jsonNestsDeeperThan('1', 0)).toBe(false);
    expect(jsonNestsDeeperThan('[]', 0)).toBe(true);
  });

  it('does not count brackets inside strings, whatever the escapes before a quote', () => {
    const brackets = '[[[[{{{{';
    expect(jsonNestsDeeperThan(JSON.stringify({ text: brackets }), 1)).toBe(false);
    // An escaped quote does not end the string; an escaped backslash before a quote does.
    expect(jsonNestsDeeperThan(JSON.stringify({ text: `say \\"${brackets}\\"` }), 1)).toBe(false);
    expect(jsonNestsDeeperThan(JSON.stringify({ text: `ends in a backslash\\`, after: [[1]] }), 2)).toBe(true);
    expect(jsonNestsDeeperThan(JSON.stringify({ text: `ends in a backslash\\`, after: [[1]] }), 3)).toBe(false);
    expect(jsonNestsDeeperThan(JSON.stringify({ [`key ${brackets}`]: 1 }), 1)).toBe(false);
    // Every string JSON.stringify makes, brackets and quotes and backslashes mixed: never counted.
    for (const text of ['"', '\\', '\\"', '"\\', '\\\\"', `${brackets}"${brackets}\\`]) {
      expect(jsonNestsDeeperThan(JSON.stringify([text, text]), 1), text).toBe(false);
    }
  });

  it('leaves text that is not JSON to JSON.parse: an unterminated string is no deeper than what came before', () => {
    expect(jsonNestsDeeperThan('[["never closed', 2)).toBe(false);
    expect(jsonNestsDeeperThan('[[["never closed', 2)).toBe(true);
  });
});

describe('readFrame', () => {
  it('refuses a frame nested deeper than MAX_FRAME_DEPTH without parsing it', () => {
    const parse = vi.spyOn(JSON, 'parse');
    try {
      const deep = `{"type":"hello","x":${nested(2_000_000)}}`;
      expect(readFrame(AgentMessageSchema, AGENT_MESSAGE_SINCE, 1, deep)).toEqual({
        kind: 'invalid',
        error: `frame nests deeper than ${MAX_FRAME_DEPTH} levels`,
      });
      expect(parse).not.toHaveBeenCalled();
    } finally {
      parse.mockRestore();
    }
  });

  it('parses a frame at MAX_FRAME_DEPTH as any other (an unknown member is dropped by the schema)', () => {
    const heartbeat = { type: 'heartbeat', journalSeq: 0, sentAt: '2026-12-06T09:00:00.000Z' };
    const atLimit = `{"type":"heartbeat","journalSeq":0,"sentAt":"${heartbeat.sentAt}","x":${nested(MAX_FRAME_DEPTH - 1)}}`;
    expect(readFrame(AgentMessageSchema, AGENT_MESSAGE_SINCE, 1, atLimit)).toMatchObject({
      kind: 'message',
      message: heartbeat,
    });
    const over = `{"type":"heartbeat","journalSeq":0,"sentAt":"${heartbeat.sentAt}","x":${nested(MAX_FRAME_DEPTH)}}`;
    expect(readFrame(AgentMessageSchema, AGENT_MESSAGE_SINCE, 1, over).kind).toBe('invalid');
  });
});
