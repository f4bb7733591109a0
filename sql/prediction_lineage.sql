-- What a prediction was based on: the readings of its feature window, each beside the
-- register-map version that decoded it. One join reaches the readings (the prediction keeps its
-- device and window bounds; a window holds the readings in (window_start, window_end]), a second
-- names their decoding.
SELECT p.id AS prediction_id,
       p.model_name,
       p.model_version,
       r.sensor,
       r.ts,
       r.value,
       r.quality,
       r.register_map_id,
       m.data_type,
       m.byte_order,
       m.scale,
       m."offset",
       m.valid_from,
       m.valid_to
FROM maintenance_predictions AS p
JOIN sensor_readings AS r
  ON r.device_id = p.device_id AND r.ts > p.window_start AND r.ts <= p.window_end
JOIN plc_register_map AS m ON m.id = r.register_map_id
WHERE p.id = :prediction_id
ORDER BY r.ts, r.sensor;
