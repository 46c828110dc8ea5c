// expect: ResNet<N> exists for N = 18, 34, 50, 101 and 152
#include <halsal/nets/aliases.hpp>
halsal::HalSalNet<halsal::ResNet<7>> net(10);
