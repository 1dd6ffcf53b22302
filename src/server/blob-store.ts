/**
 * Content-addressed files under DATA_DIR/blobs: `blobs/sha256/<first two hex>/<sha256>`. A blob is
 * written to DATA_DIR/tmp, flushed to disk, then renamed into place (and the folder flushed), so a blob
 * that exists is complete and survives a crash. Paths handed out are relative to DATA_DIR, which is
 * what the database stores.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { open, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';

/** Where a stored blob is. */
export interface StoredBlob {
  sha256: string;
  /** Relative to DATA_DIR, with forward slashes. */
  path: string;
  size: number;
}

export class BlobStore {
  readonly dataDir: string;
  private readonly tmpDir: string;

  constructor(dataDir: string) {
    this.dataDir = resolve(dataDir);
    this.tmpDir = join(this.dataDir, 'tmp');
    mkdirSync(join(this.dataDir, 'blobs', 'sha256'), { recursive: true });
    mkdirSync(this.tmpDir, { recursive: true });
  }

  /** The relative path a blob with this sha256 has. */
  pathOf(sha256: string): string {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new RangeError(`not a sha256: '${sha256}'`);
    return `blobs/sha256/${sha256.slice(0, 2)}/${sha256}`;
  }

  /** Absolute path of a relative blob path; refuses paths that leave DATA_DIR. */
  absolute(path: string): string {
    const abs = resolve(this.dataDir, path);
    if (!abs.startsWith(this.dataDir + sep)) throw new RangeError(`blob path '${path}' leaves the data directory`);
    return abs;
  }

  /** Stores `bytes` (durably, atomically); a blob already there is kept as it is. */
  async put(bytes: Uint8Array): Promise<StoredBlob> {
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const path = this.pathOf(sha256);
    const target = this.absolute(path);
    if (await this.has(path, bytes.length)) return { sha256, path, size: bytes.length };
    mkdirSync(dirname(target), { recursive: true });
    const tmp = join(this.tmpDir, `${sha256}.${randomBytes(6).toString('hex')}.part`);
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await rename(tmp, target);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    await syncDir(dirname(target));
    return { sha256, path, size: bytes.length };
  }

  async read(path: string): Promise<Uint8Array> {
    return new Uint8Array(await readFile(this.absolute(path)));
  }

  /** Removes a blob; a missing one is not an error. */
  async remove(path: string): Promise<void> {
    await rm(this.absolute(path), { force: true });
  }

  private async has(path: string, size: number): Promise<boolean> {
    try {
      return (await stat(this.absolute(path))).size === size;
    } catch {
      return false;
    }
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
