/**
 * Recognising Prisma's known request errors without leaking Prisma types past the repositories.
 */

interface PrismaKnownError {
  code: string;
  meta?: Record<string, unknown>;
}

function known(err: unknown): PrismaKnownError | null {
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string' && /^P\d{4}$/.test((err as { code: string }).code)
    ? (err as PrismaKnownError)
    : null;
}

/** A unique constraint failed (P2002). */
export function isUniqueViolation(err: unknown): boolean {
  return known(err)?.code === 'P2002';
}

/** A foreign key constraint failed (P2003), e.g. deleting a row that others still reference. */
export function isForeignKeyViolation(err: unknown): boolean {
  return known(err)?.code === 'P2003';
}

/** The record to update or delete does not exist (P2025). */
export function isRecordMissing(err: unknown): boolean {
  return known(err)?.code === 'P2025';
}
