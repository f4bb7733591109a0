-- Every reading beside the register-map version that decoded it: the version valid at the
-- reading's time (versions hold on [valid_from, valid_to)). Narrow it with a WHERE on r.ts.
SELECT
    d.name      AS device,
    r.sensor,
    r.ts,
    r.value,
    r.quality,
    m.id        AS register_map_id,
    m.data_type,
    m.byte_order,
    m.scale,
    m."offset",
    m.unit,
    m.valid_from,
    m.valid_to
FROM sensor_readings AS r
JOIN devices AS d ON d.id = r.device_id
JOIN plc_register_map AS m
  ON m.device_id = r.device_id
 AND m.sensor = r.sensor
 AND m.valid_from <= r.ts
 AND (m.valid_to IS NULL OR r.ts < m.valid_to)
ORDER BY d.name, r.sensor, r.ts;
