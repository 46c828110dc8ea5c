// ResNet<34>'s share of the programs' work, compiled once (halsal/models/instances.hpp).
#include <halsal/halsal.hpp>
#include <halsal/models/instances.hpp>

HALSAL_BACKBONE_INSTANCES(, ::halsal::ResNet<34>)
