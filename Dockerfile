# CPU image of the service: `docker build -t onnx-lora-kalman .` then
#   docker run -p 8080:8080 -v lora-data:/data -e ADMIN_API_KEY=... onnx-lora-kalman
# It needs nothing from the network at run time: the Prisma client is committed (src/server/db/generated),
# migrations run at start-up without Prisma's engines, and better-sqlite3 is compiled here from source
# when its prebuilt binary cannot be downloaded.
#
# CUDA: build with `--build-arg ORT_INSTALL=cuda12 --build-arg NODE_IMAGE=<an image with Node.js 20 and the
# CUDA 12 + cuDNN 9 runtime>` (onnxruntime-node's install script then downloads its CUDA execution
# provider, so that build needs the network) and run with `--gpus all`; ORT_EP=auto (the default) picks
# CUDA and falls back to CPU with one log line.
ARG NODE_IMAGE=node:20-slim

FROM ${NODE_IMAGE} AS build
# `skip`: onnxruntime-node's bundled CPU binaries only; `cuda12`: also fetch its CUDA provider.
ARG ORT_INSTALL=skip
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --no-audit --no-fund --onnxruntime-node-install=${ORT_INSTALL} \
 && node -e "new (require('better-sqlite3'))(':memory:').close()"

FROM ${NODE_IMAGE}
# GLIBC_TUNABLES: keep per-sample output buffers in the process instead of page-faulting them in on
# every run (src/onnx/runtime.ts, MALLOC_TUNABLES; README "Memory allocator").
ENV NODE_ENV=production \
    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456 \
    HOST=0.0.0.0 \
    PORT=8080 \
    DATA_DIR=/data
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY package.json tsconfig.json ./
COPY src ./src
COPY prisma ./prisma
COPY models ./models
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# Not `npm start`: node receives SIGTERM itself and stops gracefully.
CMD ["node", "--import", "tsx", "src/server/main.ts"]
