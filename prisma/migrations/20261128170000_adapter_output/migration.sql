-- Adapters name the model output they train and predict (config.output), and datasets the output
-- their labels were checked against (summary.label.output). Those made before both used the model's
-- first output, so they get its name.
UPDATE "Adapter"
SET "config" = json_set("config", '$.output', (SELECT json_extract("outputs", '$[0].name') FROM "BaseModel" WHERE "BaseModel"."id" = "Adapter"."modelId"))
WHERE json_extract("config", '$.output') IS NULL
  AND (SELECT json_extract("outputs", '$[0].name') FROM "BaseModel" WHERE "BaseModel"."id" = "Adapter"."modelId") IS NOT NULL;

UPDATE "Dataset"
SET "summary" = json_set("summary", '$.label.output', (SELECT json_extract("outputs", '$[0].name') FROM "BaseModel" WHERE "BaseModel"."id" = "Dataset"."modelId"))
WHERE json_extract("summary", '$.label.output') IS NULL
  AND (SELECT json_extract("outputs", '$[0].name') FROM "BaseModel" WHERE "BaseModel"."id" = "Dataset"."modelId") IS NOT NULL;
