-- Adapters name the model output they train and predict (config.output), and datasets the output
-- their labels were checked against (summary.label.output). Those made before both used the model's
-- first output, so they get its name.
UPDATE "Adapter" AS a
SET "config" = jsonb_set(a."config", '{output}', m."outputs" -> 0 -> 'name')
FROM "BaseModel" AS m
WHERE m."id" = a."modelId" AND NOT (a."config" ? 'output') AND m."outputs" -> 0 -> 'name' IS NOT NULL;

UPDATE "Dataset" AS d
SET "summary" = jsonb_set(d."summary", '{label,output}', m."outputs" -> 0 -> 'name')
FROM "BaseModel" AS m
WHERE m."id" = d."modelId" AND NOT (d."summary" -> 'label' ? 'output') AND m."outputs" -> 0 -> 'name' IS NOT NULL;
