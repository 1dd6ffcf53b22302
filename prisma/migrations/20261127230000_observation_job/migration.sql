-- AlterTable
ALTER TABLE "Observation" ADD COLUMN "jobId" TEXT;

-- CreateIndex
CREATE INDEX "Observation_jobId_idx" ON "Observation"("jobId");
