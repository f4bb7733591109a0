-- Every change of a point's decoding: points with more than one register-map version, oldest first.
SELECT
    d.name AS device,
    m.sensor,
    m.id   AS register_map_id,
    m.data_type,
    m.byte_order,
    m.scale,
    m."offset",
    m.valid_from,
    m.valid_to
FROM plc_register_map AS m
JOIN devices AS d ON d.id = m.device_id
WHERE (m.device_id, m.sensor) IN (
    SELECT device_id, sensor FROM plc_register_map GROUP BY device_id, sensor HAVING count(*) > 1
)
ORDER BY d.name, m.sensor, m.valid_from;
