# Writes OUT, a C file holding the Lua library IN as a string. The library's
# name is llmq_ and the first 12 hex digits of the file's SHA-1, put in for
# @LIB@: hosts running different builds load different libraries side by
# side instead of replacing each other's.
file(READ ${IN} lua)
file(SHA1 ${IN} sha)
string(SUBSTRING ${sha} 0 12 short)
set(lib "llmq_${short}")
string(REPLACE "@LIB@" "${lib}" lua "${lua}")
string(REPLACE "\\" "\\\\" lua "${lua}")
string(REPLACE "\"" "\\\"" lua "${lua}")
string(REPLACE "\n" "\\n\"\n\t\"" lua "${lua}")
set(body "/* Generated from daemon/fleet/fleet.lua at build time. Do not edit. */\n#include \"fleet/fleet.h\"\n\nconst char fleet_lua[] =\n\t\"${lua}\";\nconst char fleet_lua_lib[] = \"${lib}\";\n")
file(WRITE ${OUT}.tmp "${body}")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different ${OUT}.tmp ${OUT})
