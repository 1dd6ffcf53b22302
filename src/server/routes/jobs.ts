/**
 * `/v1/jobs`: create (with `Idempotency-Key`), list, get, cancel/pause/resume, events (paged JSON, or
 * with `Accept: text/event-stream` a live SSE stream that replays from `Last-Event-ID` / `?after=` and
 * follows the job until its final event), checkpoints. The caller's own jobs only.
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';

import { principalOf } from '../auth.js';
import type { JobEventRecord } from '../repositories/index.js';
import { errors, IdParams } from '../schemas/common.js';
import {
  CheckpointListSchema, CreateJobBody, IdempotencyHeaders, JobEventPageSchema, JobEventsQuery, JobListQuery, JobListSchema, JobSchema, presentEvent, presentJob,
} from '../schemas/jobs.js';
import { FINAL_EVENTS, FINAL_STATUSES } from '../services/jobs.js';
import type { AppContext } from '../app.js';

/** SSE comment lines keep proxies from closing an idle stream. */
const HEARTBEAT_MS = 15_000;

export const jobRoutes: FastifyPluginAsyncZod<{ ctx: AppContext }> = async (app, { ctx }) => {
  const streams = new Set<() => void>();
  app.addHook('onClose', async () => {
    for (const end of [...streams]) end();
  });

  app.post(
    '/jobs',
    {
      schema: {
        tags: ['jobs'],
        summary: 'Start a fine-tuning job of an adapter over a dataset',
        description: 'Answers 201 with a new queued job, or 200 with the existing job when this user already sent the same `Idempotency-Key`.',
        body: CreateJobBody,
        headers: IdempotencyHeaders,
        response: { 200: JobSchema, 201: JobSchema, ...errors(400, 401, 404, 422) },
      },
    },
    async (req, reply) => {
      const p = principalOf(req);
      const key = req.headers['idempotency-key'];
      const { job, created } = await ctx.jobs.create(p.user.id, req.body, key);
      if (created) req.log.info({ job: job.id, adapter: job.adapterId, dataset: job.datasetId }, 'job created');
      return reply.status(created ? 201 : 200).send(presentJob(job));
    },
  );

  app.get(
    '/jobs',
    { schema: { tags: ['jobs'], summary: 'List your jobs', querystring: JobListQuery, response: { 200: JobListSchema, ...errors(400, 401) } } },
    async (req) => {
      const { limit, cursor, adapterId, status } = req.query;
      const page = await ctx.jobs.list(principalOf(req).user.id, { limit, ...(cursor && { cursor }), ...(adapterId && { adapterId }), ...(status && { status }) });
      return { items: page.items.map(presentJob), nextCursor: page.nextCursor };
    },
  );

  app.get(
    '/jobs/:id',
    { schema: { tags: ['jobs'], summary: 'One of your jobs', params: IdParams, response: { 200: JobSchema, ...errors(401, 404) } } },
    async (req) => presentJob(await ctx.jobs.get(req.params.id, principalOf(req).user.id)),
  );

  for (const action of ['cancel', 'pause', 'resume'] as const) {
    app.post(
      `/jobs/:id/${action}`,
      {
        schema: {
          tags: ['jobs'],
          summary: { cancel: 'Cancel a job that has not finished', pause: 'Pause a running job (before its next step)', resume: 'Resume a paused job' }[action],
          params: IdParams,
          response: { 200: JobSchema, ...errors(401, 404, 409) },
        },
      },
      async (req) => presentJob(await ctx.jobs[action](req.params.id, principalOf(req).user.id)),
    );
  }

  app.get(
    '/jobs/:id/checkpoints',
    { schema: { tags: ['jobs'], summary: "A job's checkpoints, by step", params: IdParams, response: { 200: CheckpointListSchema, ...errors(401, 404) } } },
    async (req) => {
      const items = await ctx.jobs.checkpoints(req.params.id, principalOf(req).user.id);
      return { items: items.map((c) => ({ id: c.id, step: c.step, kind: c.kind, metrics: c.metrics, createdAt: c.createdAt.toISOString() })) };
    },
  );

  app.get(
    '/jobs/:id/events',
    {
      schema: {
        tags: ['jobs'],
        summary: "A job's events: paged JSON, or a live SSE stream with Accept: text/event-stream",
        description:
          'JSON: events with seq > `after`, up to `limit`. SSE (`Accept: text/event-stream`): every event after `Last-Event-ID` (or `after`) as ' +
          '`id: <seq>`, `event: <type>`, `data: <event JSON>`, then new ones as they happen; the stream ends after the final event (finished, failed, cancelled).',
        params: IdParams,
        querystring: JobEventsQuery,
        response: { 200: JobEventPageSchema, ...errors(400, 401, 404) },
      },
    },
    async (req, reply) => {
      const ownerId = principalOf(req).user.id;
      const { after, limit } = req.query;
      if (!/text\/event-stream/.test(req.headers.accept ?? '')) {
        const items = await ctx.jobs.events(req.params.id, ownerId, after, limit);
        return { items: items.map(presentEvent), nextAfter: items.length === limit ? items[items.length - 1]!.seq : null };
      }
      const job = await ctx.jobs.get(req.params.id, ownerId);
      const lastId = Number(req.headers['last-event-id']);
      let sent = Number.isInteger(lastId) && lastId >= 0 ? lastId : after;
      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-request-id': String(req.id) });
      raw.write(': events of job ' + job.id + '\n\n');
      let ended = false;
      let replaying = true;
      const buffered: JobEventRecord[] = [];
      const end = () => {
        if (ended) return;
        ended = true;
        unsubscribe();
        clearInterval(heartbeat);
        streams.delete(end);
        raw.end();
      };
      const send = (e: JobEventRecord) => {
        if (ended || e.seq <= sent) return;
        sent = e.seq;
        raw.write(`id: ${e.seq}\nevent: ${e.type}\ndata: ${JSON.stringify(presentEvent(e))}\n\n`);
        if (FINAL_EVENTS.includes(e.type)) end();
      };
      // Subscribe before replaying so nothing falls between the replay and the live events.
      const unsubscribe = ctx.jobs.subscribe(job.id, (e) => (replaying ? buffered.push(e) : send(e)));
      const heartbeat = setInterval(() => raw.write(': keep-alive\n\n'), HEARTBEAT_MS);
      streams.add(end);
      raw.on('close', end);
      try {
        for (;;) {
          const page = await ctx.jobs.eventsAfter(job.id, sent, 500);
          page.forEach(send);
          if (page.length < 500 || ended) break;
        }
        replaying = false;
        buffered.splice(0).forEach(send);
        // Every final status comes with a final event; should one be missing, a finished job's stream still ends.
        const now = await ctx.jobs.get(job.id, ownerId);
        if (!ended && FINAL_STATUSES.includes(now.status)) setTimeout(end, 2000).unref();
      } catch (err) {
        req.log.error({ err }, 'event stream failed');
        end();
      }
    },
  );
};
