/* mqtt_test_str.h — string helpers shared by the MQTT unit tests (cmocka). */
#ifndef ENVIROMON_MQTT_TEST_STR_H
#define ENVIROMON_MQTT_TEST_STR_H

#include <string.h>

#include "devhost/mqtt/mqtt_packet.h"

/* A length-delimited view of a C string. */
static inline mqtt_str_t S(const char *s)
{
    mqtt_str_t r = {s, strlen(s)};
    return r;
}

/* s holds exactly the bytes of want. */
static inline void assert_str(mqtt_str_t s, const char *want)
{
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.s, want, s.len);
}

#endif
