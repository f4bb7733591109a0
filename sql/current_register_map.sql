-- The register map in force now: one row per active device and point, with where it is read.
-- Addresses are wire addresses (0-based); add the device's address_base for the manual's numbering.
SELECT
    d.name            AS device,
    d.kind            AS device_kind,
    c.name            AS connection,
    c.host || ':' || c.port AS endpoint,
    m.unit_id,
    m.sensor,
    m.register_kind,
    m.address,
    m.address + d.address_base AS address_in_manual,
    m.data_type,
    m.byte_order,
    m.scale,
    m."offset",
    m.unit,
    m.physical_min,
    m.physical_max,
    m.warn_low,
    m.warn_high,
    m.alarm_low,
    m.alarm_high,
    m.poll_group,
    m.valid_from
FROM plc_register_map AS m
JOIN devices AS d ON d.id = m.device_id
JOIN plc_connections AS c ON c.id = m.connection_id
WHERE m.valid_to IS NULL
  AND d.active
ORDER BY d.name, m.register_kind, m.address;
