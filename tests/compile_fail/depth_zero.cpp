// expect: Depth<N> is the number of convolutional layers in the saliency branch and must be 1 to 5
#include <halsal/nets/aliases.hpp>
halsal::HalSalNet<halsal::ResNet<50>, halsal::Depth<0>> net(10);
