import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import {
  DEFAULT_MODELS_DIR,
  loadMailGroup,
  loadTokenizer,
  mailText,
  parseTokenizer,
  words,
  type MailGroup,
} from '../../src/data/index.js';

/** Written by models/build.py with the tokenizer it trained the model with. */
interface Reference {
  maxLength: number;
  mails: { group: MailGroup; file: string; ids: number[] }[];
  strings: { text: string; ids: number[] }[];
  rawMails: { raw: string; text: string; ids: number[] }[];
}

const reference = JSON.parse(readFileSync(new URL('./tokenizer-reference.json', import.meta.url), 'utf8')) as Reference;
const tokenizer = loadTokenizer(join(DEFAULT_MODELS_DIR, 'mail-tokenizer.json'));

describe('the TypeScript tokenizer gives the build script ids', () => {
  it('on real mails of every group', () => {
    expect(reference.mails.length).toBeGreaterThanOrEqual(20);
    for (const ref of reference.mails) {
      const mail = loadMailGroup(ref.group).find((m) => m.file === ref.file);
      expect(mail, `${ref.group}/${ref.file}`).toBeDefined();
      expect(Array.from(tokenizer.encode(mail!.text)), `${ref.group}/${ref.file}`).toEqual(ref.ids);
    }
  });

  it('on awkward strings (unicode, CR, $ and !, truncation)', () => {
    for (const ref of reference.strings) {
      expect(Array.from(tokenizer.encode(ref.text)), JSON.stringify(ref.text.slice(0, 40))).toEqual(ref.ids);
    }
    expect(reference.strings.some((r) => r.ids.length === reference.maxLength)).toBe(true);
  });

  it('on raw mails through mailText', () => {
    for (const ref of reference.rawMails) {
      expect(mailText(ref.raw)).toBe(ref.text);
      expect(Array.from(tokenizer.encode(mailText(ref.raw)))).toEqual(ref.ids);
    }
  });
});

describe('Tokenizer', () => {
  it('starts with [CLS], maps unknown words to [UNK], truncates to maxLength', () => {
    expect(tokenizer.maxLength).toBe(128);
    const ids = tokenizer.encode('the zzqqxxyy');
    expect(ids[0]).toBe(tokenizer.clsId);
    expect(ids[2]).toBe(tokenizer.unkId);
    expect(tokenizer.token(ids[1]!)).toBe('the');
    expect(tokenizer.encode('a '.repeat(500)).length).toBe(128);
    expect(Array.from(tokenizer.encode(''))).toEqual([tokenizer.clsId]);
  });

  it('splits words like the build script', () => {
    expect(words('Hello, WORLD!!! $5 café x_y')).toEqual(['hello', 'world', '!', '!', '!', '$', '5', 'caf', 'x', 'y']);
  });

  it('pads a batch to the longest row or to a fixed length, as int64', () => {
    const b = tokenizer.encodeBatch(['one two three', 'one']);
    expect(b.dims).toEqual([2, 4]);
    expect(b.ids).toBeInstanceOf(BigInt64Array);
    expect(b.ids[4]).toBe(BigInt(tokenizer.clsId));
    expect(Array.from(b.ids.slice(6))).toEqual([BigInt(tokenizer.padId), BigInt(tokenizer.padId)]);
    const fixed = tokenizer.encodeBatch(['one'], { padTo: 128 });
    expect(fixed.dims).toEqual([1, 128]);
    expect(tokenizer.encodeBatch([]).dims).toEqual([0, 1]);
  });

  it('rejects bad calls and bad files', () => {
    expect(() => tokenizer.encode(5 as unknown as string)).toThrow(TypeError);
    expect(() => tokenizer.encodeBatch('abc' as unknown as string[])).toThrow(TypeError);
    expect(() => tokenizer.encodeBatch(['a'], { padTo: 0 })).toThrow(RangeError);
    expect(() => tokenizer.encodeBatch(['a'], { padTo: 129 })).toThrow(RangeError);
    expect(() => parseTokenizer('not json')).toThrow(expect.objectContaining({ code: 'TOKENIZER_FORMAT' }));
    expect(() => parseTokenizer('{"type": "bpe"}')).toThrow(expect.objectContaining({ code: 'TOKENIZER_FORMAT' }));
    expect(() =>
      parseTokenizer('{"type":"word-level","version":1,"maxLength":8,"padId":0,"unkId":1,"clsId":5,"vocab":["a","b"]}'),
    ).toThrow(expect.objectContaining({ code: 'TOKENIZER_FORMAT' }));
  });
});
